"""Re-imaging on the device (DESIGN §12, seed 001 ``standby.*``).

- :mod:`.source`: the controller's image server over mutual TLS (metadata, ranged reads);
- :mod:`.cache`: ``standby.cache_images``: a verified local cache within a budget;
- :mod:`.writer`: stream an image onto a block device with aligned direct writes;
- :mod:`.configdrive` and :mod:`.boot`: ``standby.run_image``'s config drive and kexec;
- :mod:`.commands`: the three methods, registered as agent commands.
"""
