"""The controller's image registry (DESIGN §12): upload, store, and serve disk images.

:mod:`~hwfleet.images.formats` (magic numbers, streaming decompression) is shared
with the agent's :mod:`hwfleet.agent.imaging`; :mod:`~hwfleet.images.registry`
stores uploads; :mod:`~hwfleet.images.server` serves them to enrolled devices over
mutual TLS with range requests.
"""
