"""Clients for systems outside the fleet: the MES (and later Redfish, Kea, webhooks)."""

from hwfleet.integrations.mes import Delivery, MesClient, MesError

__all__ = ["Delivery", "MesClient", "MesError"]
