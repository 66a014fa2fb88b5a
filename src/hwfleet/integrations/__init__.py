"""Clients for systems outside the fleet, each in its own module.

The MES (``mes``: lookups and posts; ``mes_records``: its record of a serial,
parsed; ``mes_gate``: one probe while it is down) and RabbitMQ's administration
(``rabbitmq_users``: a user per AMQP device, through ``rabbitmqctl`` or the
management API in ``rabbitmq_users_http``; ``rabbitmq_policy``: the
``hwinfo_queue`` dead-letter policy). Later Redfish, Kea and webhooks.
"""

from hwfleet.integrations.mes import MesClient, MesError, PostOutcome

__all__ = ["MesClient", "MesError", "PostOutcome"]
