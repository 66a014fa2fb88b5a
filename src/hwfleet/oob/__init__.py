"""Out-of-band management (DESIGN §15): BMC drivers, encrypted BMC credentials, pollers.

A node's BMC is reached through one driver interface (:mod:`hwfleet.oob.driver`);
Redfish, IPMI over LAN and SNMP drivers are loaded from the ``hwfleet.bmc_drivers``
entry-point group so a site can add its own. Nothing here imports a driver's library
until that driver is used.
"""
