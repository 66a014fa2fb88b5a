"""The controller's REST API (FastAPI): routers per resource behind the operator token.

Routers (``devices``, ``scans``, …) translate HTTP; ``services/`` hold the store reads and
controller calls they make; ``deps`` hands the services to the routers; ``ports`` says,
as protocols, what the API needs from the controller, which it never imports.
"""
