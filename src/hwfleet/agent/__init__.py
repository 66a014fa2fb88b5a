"""The agent on a device: one runtime answering the controller over whichever link reaches it.

It imports nothing from ``controller``, ``store``, ``api``, ``cli`` or ``sim``:
whoever starts it (``hwfleet agent``, the simulator) builds the
:class:`~hwfleet.agent.runtime.AgentRuntime` — hardware managers, network
backend — and hands it to :func:`hwfleet.agent.main.run_agent`.

- :mod:`.runtime` the device itself; :mod:`.status` its one ``st_id`` rule;
  :mod:`.tasks` long commands; :mod:`.identity`, :mod:`.localstate` who it is
  and what it keeps.
- :mod:`.links` how it reaches the controller (stream, bus, AMQP; enrollment).
- :mod:`.commands` what it answers; :mod:`.hardware` what it reads and erases;
  :mod:`.netconfig` how it changes its network; :mod:`.plugins` the entry-point
  groups that extend both.
- :mod:`.access` seed 004's direct access (admin listener, admin password, trusted
  keys); :mod:`.peers` the peer behind a command; :mod:`.discovery` its discovery answers;
  :mod:`.main` the process.
"""
