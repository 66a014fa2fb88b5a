"""Boot services (DESIGN §14, seed 003): DHCP through Kea, TFTP and HTTP boot of iPXE.

* :mod:`.kea_config` builds Kea's configuration from hwfleet's settings and pins;
* :mod:`.kea_control` talks to Kea's unix control socket;
* :mod:`.kea_supervisor` starts Kea, restarts it when it dies, or attaches to a running one;
* :mod:`.dhcp_rpc` answers the nine ``dhcp`` RPC methods;
* :mod:`.lease_watch` turns new leases into ``dhcp.bind.success.<nodeid>`` events;
* :mod:`.tftp` serves iPXE read-only over TFTP;
* :mod:`.profiles` renders the per-node iPXE scripts that ``api/boot.py`` serves.
"""
