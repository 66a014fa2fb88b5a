"""The REST API's services: each route's store reads and controller calls, typed.

Handlers take a service through :mod:`hwfleet.api.deps` and translate HTTP to calls on
it; the services hold the store and the controller's parts (:mod:`hwfleet.api.ports`).
"""
