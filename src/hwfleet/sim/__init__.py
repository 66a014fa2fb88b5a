"""Simulated devices and a simulated MES, speaking the real protocols over real sockets.

:mod:`.profiles` reads and generates fleet profiles; :mod:`.hardware` and
:mod:`.network` are what a simulated agent is handed instead of the machine's
own (a profile's inventory; settings recorded, never applied); :mod:`.fleet`
builds simulated runtimes (``hwfleet agent --simulate``) and runs N of them
(``hwfleet sim``) on their own loopback addresses (:mod:`.addresses`);
:mod:`.mes` is the MES simulator (``hwfleet mes-sim``). The one-command
demo, which also runs a controller, is :mod:`hwfleet.cli.demo_session`.
"""
