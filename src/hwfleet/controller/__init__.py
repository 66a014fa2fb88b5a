"""The controller: the fleet's side of every conversation (DESIGN §2).

``app`` is the composition root (it builds every part and the REST API);
``links/`` carries the envelope to and from agents (stream and AMQP);
``scan/`` is the burn-in scan pipeline; ``ops/`` is live configuration and
log shipping. Beside them, one module per remaining concept: ``devices``
(sessions and presence), ``presence`` (the liveness rule), ``tasks``,
``discovery`` (a browser run when asked, checked against enrolled keys), ``events`` (publishing
state changes) and ``outbox`` (delivering MES and webhook posts, at least once).
"""
