"""The controller's REST API (FastAPI): routers per resource behind the operator token."""
