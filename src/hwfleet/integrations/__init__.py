"""Clients for systems outside the fleet: the MES (and later Redfish, Kea, webhooks)."""

from hwfleet.integrations.mes import MesClient, MesError, PostOutcome

__all__ = ["MesClient", "MesError", "PostOutcome"]
