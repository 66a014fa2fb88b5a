"""Direct access to a device (seed 004): who may talk to the agent without the controller.

- :mod:`.admin_listener` the TLS listener an operator's client connects to directly;
- :mod:`.adminpass` the device's admin password (scrypt, on disk) and its checks;
- :mod:`.trustlist` the client keys the device obeys.

Which peer a command came from is :mod:`hwfleet.agent.peers`: the runtime needs it too.
"""
