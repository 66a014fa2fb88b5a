"""The ``/init`` of the discovery environment (busybox sh, PID 1 of the initramfs).

It brings the network up with DHCP, reads ``hwfleet.controller``, ``hwfleet.token`` and
``hwfleet.node`` and ``hwfleet.ca`` (the controller CA's fingerprint, pinned so the
agent trusts no other controller) from the kernel command line (the discovery boot script puts them
there) and runs the hwfleet agent, which enrolls with the single-use token, reports its
inventory and waits for work. If the agent exits it is started again (bounded back-off),
and a shell is kept on the console for whoever stands at the machine.
"""

from __future__ import annotations

#: Network drivers loaded at start, dependencies first (e1000 is what qemu emulates).
MODULES = (
    "kernel/net/core/failover.ko",
    "kernel/drivers/net/net_failover.ko",
    "kernel/drivers/net/virtio_net.ko",
    "kernel/drivers/net/ethernet/intel/e1000/e1000.ko",
    "kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko",
)

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /run /tmp /var/lib/hwfleet
for m in $(cat /etc/hwfleet/modules); do insmod "/lib/modules/$m" 2>/dev/null; done
arg() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^$1=//p" | tail -n 1; }
CONTROLLER=$(arg hwfleet.controller)
TOKEN=$(arg hwfleet.token)
CA=$(arg hwfleet.ca)
# An emulated machine is slow: connecting and enrolling get two minutes, not 15 s.
export HWFLEET_CONNECT_TIMEOUT=120
ip link set lo up
NIC=""
for dev in $(ls /sys/class/net); do
  [ "$dev" = lo ] && continue
  ip link set "$dev" up
  udhcpc -i "$dev" -n -q -t 10 -T 2 -s /etc/hwfleet/udhcpc.sh && NIC="$dev" && break
done
echo "hwfleet discovery: agent for $CONTROLLER"
delay=1
while true; do
  PYTHONPATH=/opt/hwfleet/site /usr/bin/python3.11 -m hwfleet agent \
    --controller "$CONTROLLER" --enroll-token "$TOKEN" --data-dir /var/lib/hwfleet \
    --discovery-interface "${NIC:-lo}" ${CA:+--controller-fingerprint=$CA}
  echo "hwfleet discovery: agent exited; again in $delay s"
  sleep "$delay"
  [ "$delay" -lt 60 ] && delay=$((delay * 2))
done &
exec setsid cttyhack sh
"""

UDHCPC = r"""#!/bin/busybox sh
case "$1" in
  deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
    : > /etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done ;;
esac
exit 0
"""
