"""``hwfleet bootstrap``: take over a bare machine over SSH (seed 002, DESIGN §13).

:mod:`.hostkeys` verifies the host key (known_hosts, or trust on first use, printed
and recorded), :mod:`.remote` detects the target and runs commands, :mod:`.units`
writes the systemd unit or sysvinit script, :mod:`.wheels` builds the wheelhouse the
target installs from without internet, :mod:`.install` puts it together per host and
:mod:`.run` drives many hosts at once.
"""
