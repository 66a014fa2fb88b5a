"""Simulation profiles (DESIGN §8): load, validate and generate the devices ``hwfleet sim`` plays.

A profile is ``{"devices": [...]}``; each device carries its serial (``sn``,
an integer or a string, kept as given), identity, NICs, PCI functions,
memory, CPUs and disks in the same shapes a real inventory uses. Anything
wrong is reported as ``<file>: <JSON path>: <what is wrong>`` so an operator
can fix the exact field. A field this version does not know is refused, naming
it and the device: a misspelling (``"interfces"``) must not quietly leave a device
without its NICs. The optional top-level ``"mes"`` section is what ``hwfleet
mes-sim`` answers for (:mod:`hwfleet.sim.mes`); ``sim`` and ``mes-sim`` validate a
profile with this one loader.
"""

from __future__ import annotations

import difflib
import random
import re
import uuid
from pathlib import Path
from typing import Annotated, Any

import msgspec

from hwfleet.errors import ConfigError
from hwfleet.protocol.inventory import Cpu, Disk, Nic, PciDevice
from hwfleet.protocol.mac import is_mac, normalize_mac

_PCI_ADDRESS = re.compile(r"^([0-9a-fA-F]{4,8}:)?[0-9a-fA-F]{2}:[0-1][0-9a-fA-F]\.[0-7]$")
_PCI_ID = re.compile(r"^(0x)?[0-9a-fA-F]{1,4}$")
_PCI_CLASS = re.compile(r"^(0x)?[0-9a-fA-F]{1,6}$")
#: Simulated identities derive from this namespace, so they never collide with real uuid4s.
SIM_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://hwfleet.invalid/sim")
_MAX_GENERATED = 2_000_000
_NICS_PER_DEVICE_SLOTS = 8


# The wire shapes stay lenient (a newer agent may add fields); a profile is written by hand.
class ProfileNic(Nic, forbid_unknown_fields=True):
    """A NIC as a profile gives it (the inventory shape, no unknown fields)."""


class ProfilePci(PciDevice, forbid_unknown_fields=True):
    """A PCI function as a profile gives it."""


class ProfileCpu(Cpu, forbid_unknown_fields=True):
    """A processor package as a profile gives it."""


class ProfileDisk(Disk, forbid_unknown_fields=True):
    """A disk as a profile gives it."""


class WifiNetwork(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """A Wi-Fi network the simulated device can see."""

    ssid: str
    signal: int = 0
    security: str = ""


class ProfileDevice(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """One simulated device; it reports exactly these facts."""

    sn: int | str
    name: str = ""
    model_id: str = ""
    uuid: str | None = None
    version: str | None = None
    hostname: str | None = None
    interfaces: list[ProfileNic] = msgspec.field(default_factory=list)
    pci: list[ProfilePci] = msgspec.field(default_factory=list)
    memory_mb: Annotated[int, msgspec.Meta(ge=0)] = 0
    #: One entry per processor package; a bare string is a model name.
    cpus: list[ProfileCpu | str] = msgspec.field(default_factory=list)
    disks: list[ProfileDisk] = msgspec.field(default_factory=list)
    wifi: list[WifiNetwork] = msgspec.field(default_factory=list)


class MesSection(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """What ``mes-sim`` answers instead of the devices' own MACs (see :mod:`hwfleet.sim.mes`)."""

    #: serial → the exact ``info`` rows (or a message) answered for it.
    records: dict[str, list[dict[str, Any]] | str] = msgspec.field(default_factory=dict)
    unregistered: list[int | str] = msgspec.field(default_factory=list)


class Profile(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    devices: list[ProfileDevice]
    mes: MesSection | None = None


class ProfileError(ConfigError, ValueError):
    """A profile that cannot be used; ``field`` is a JSON path such as ``$.devices[3].sn``."""

    def __init__(self, source: str, field: str, reason: str) -> None:
        super().__init__(f"{source}: {field}: {reason}")
        self.source = source
        self.field = field
        self.reason = reason


def is_pci_address(text: str) -> bool:
    """``0000:04:00.0`` (or lspci's short ``04:00.0``)."""
    return bool(_PCI_ADDRESS.match(text))


def load_profile(path: Path | str) -> Profile:
    """Read and validate a profile file; raises :class:`ProfileError` naming the field."""
    source = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ProfileError(source, "$", f"cannot read the file: {exc.strerror or exc}") from exc
    return parse_profile(data, source)


def parse_profile(data: bytes | str, source: str = "<profile>") -> Profile:
    """Decode and validate profile JSON; raises :class:`ProfileError` naming the field."""
    raw = data.encode() if isinstance(data, str) else data
    if not raw.strip():
        raise ProfileError(source, "$", 'the file is empty (expected {"devices": [...]})')
    # Checked here, not left to msgspec: its report differs between versions (0.23 calls it
    # invalid JSON, older ones let UnicodeDecodeError escape with an offset into the string).
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError(source, "$", f"not valid UTF-8 (byte {exc.start})") from None
    try:
        profile = msgspec.json.decode(raw, type=Profile)
    except msgspec.ValidationError as exc:
        field, reason = _split_msgspec_error(str(exc))
        raise ProfileError(source, field, _explain(raw, field, reason)) from exc
    except msgspec.DecodeError as exc:
        raise ProfileError(source, "$", f"not valid JSON: {_locate(raw, str(exc))}") from exc
    validate(profile, source)
    return profile


def validate(profile: Profile, source: str = "<profile>") -> None:
    """Check what the schema cannot: formats, uniqueness, non-empty names. Normalizes uuids."""
    if not profile.devices:
        raise ProfileError(source, "$.devices", "no devices (a profile needs at least one)")
    serials: dict[str, int] = {}
    uuids: dict[str, int] = {}
    macs: dict[str, str] = {}
    for index, device in enumerate(profile.devices):
        at = f"$.devices[{index}]"
        _check_serial(source, at, device.sn)
        key = str(device.sn).strip()
        if key in serials:
            raise ProfileError(
                source, f"{at}.sn", f"{device.sn!r} repeats the sn of $.devices[{serials[key]}]"
            )
        serials[key] = index
        if device.uuid is not None:
            try:
                device.uuid = str(uuid.UUID(device.uuid))
            except ValueError:
                raise ProfileError(source, f"{at}.uuid", f"{device.uuid!r} is not a UUID") from None
            if device.uuid in uuids:
                raise ProfileError(
                    source, f"{at}.uuid", f"repeats the uuid of $.devices[{uuids[device.uuid]}]"
                )
            uuids[device.uuid] = index
        _check_interfaces(source, at, device, macs)
        _check_pci(source, at, device)
        _check_disks(source, at, device)
        _check_wifi(source, at, device)


def _check_serial(source: str, at: str, sn: int | str) -> None:
    if isinstance(sn, str) and not sn.strip():
        raise ProfileError(source, f"{at}.sn", "is empty")
    if isinstance(sn, int) and sn < 0:
        raise ProfileError(source, f"{at}.sn", f"{sn} is negative")


def _check_interfaces(source: str, at: str, device: ProfileDevice, macs: dict[str, str]) -> None:
    names: set[str] = set()
    for index, nic in enumerate(device.interfaces):
        here = f"{at}.interfaces[{index}]"
        if not nic.name.strip():
            raise ProfileError(source, f"{here}.name", "is empty")
        if nic.name in names:
            raise ProfileError(source, f"{here}.name", f"{nic.name!r} appears twice")
        names.add(nic.name)
        if not is_mac(nic.mac):
            raise ProfileError(source, f"{here}.mac", f"{nic.mac!r} is not a MAC address")
        mac = normalize_mac(nic.mac)
        if mac in macs:
            raise ProfileError(source, f"{here}.mac", f"{nic.mac!r} is already used by {macs[mac]}")
        macs[mac] = here
        if nic.pci is not None and not is_pci_address(nic.pci):
            raise ProfileError(source, f"{here}.pci", f"{nic.pci!r} is not a PCI address")


def _check_pci(source: str, at: str, device: ProfileDevice) -> None:
    seen: set[str] = set()
    for index, function in enumerate(device.pci):
        here = f"{at}.pci[{index}]"
        if not is_pci_address(function.address):
            raise ProfileError(
                source, f"{here}.address", f"{function.address!r} is not a PCI address"
            )
        if function.address.lower() in seen:
            raise ProfileError(source, f"{here}.address", f"{function.address!r} appears twice")
        seen.add(function.address.lower())
        for field, value, pattern in (
            ("vendor", function.vendor, _PCI_ID),
            ("device", function.device, _PCI_ID),
            ("class", function.class_, _PCI_CLASS),
        ):
            if not pattern.match(value):
                raise ProfileError(source, f"{here}.{field}", f"{value!r} is not a hex PCI {field}")


def _check_disks(source: str, at: str, device: ProfileDevice) -> None:
    names: set[str] = set()
    for index, disk in enumerate(device.disks):
        here = f"{at}.disks[{index}]"
        if not disk.name.strip():
            raise ProfileError(source, f"{here}.name", "is empty")
        if disk.name in names:
            raise ProfileError(source, f"{here}.name", f"{disk.name!r} appears twice")
        names.add(disk.name)
        if disk.size < 0:
            raise ProfileError(source, f"{here}.size", f"{disk.size} is negative")


def _check_wifi(source: str, at: str, device: ProfileDevice) -> None:
    # What a real radio could report: an SSID is 1-32 bytes, a signal 0-100 % or a dBm figure.
    for index, network in enumerate(device.wifi):
        here = f"{at}.wifi[{index}]"
        if not 1 <= len(network.ssid.encode("utf-8")) <= 32:
            raise ProfileError(source, f"{here}.ssid", "must be 1 to 32 bytes")
        if not -120 <= network.signal <= 100:
            raise ProfileError(source, f"{here}.signal", f"{network.signal} is not -120..100")


def _split_msgspec_error(message: str) -> tuple[str, str]:
    """``Expected `int`, got `str` - at `$.devices[0].sn``` → (path, lower-cased reason)."""
    reason, sep, where = message.rpartition(" - at `")
    if not sep:
        reason, where = message, "$`"
    field = where.rstrip("`")
    missing = re.match(r"Object missing required field `([^`]+)`", reason)
    if missing:
        return f"{field}.{missing.group(1)}", "required field is missing"
    unknown = re.match(r"Object contains unknown field `([^`]+)`", reason)
    if unknown:
        return f"{field}.{unknown.group(1)}", "unknown field"
    return field, reason[:1].lower() + reason[1:].replace("`", "")


#: The struct each JSON path (with indexes removed) is decoded into, for "did you mean".
_STRUCT_AT: dict[str, type[msgspec.Struct]] = {
    "$": Profile,
    "$.devices": ProfileDevice,
    "$.devices.interfaces": ProfileNic,
    "$.devices.pci": ProfilePci,
    "$.devices.cpus": ProfileCpu,
    "$.devices.disks": ProfileDisk,
    "$.devices.wifi": WifiNetwork,
    "$.mes": MesSection,
}


def _explain(raw: bytes, field: str, reason: str) -> str:
    """An unknown field: which device it is in, and the known field it is closest to."""
    if reason != "unknown field":
        return reason
    parent, _, name = field.rpartition(".")
    struct = _STRUCT_AT.get(re.sub(r"\[\d+\]", "", parent))
    known = [f.encode_name for f in msgspec.structs.fields(struct)] if struct else []
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(known))}"
    device = re.match(r"\$\.devices\[(\d+)\]", field)
    if device:
        try:
            entry = msgspec.json.decode(raw)["devices"][int(device.group(1))]
            reason = f"unknown field in device sn {entry['sn']!r}"
        except (msgspec.DecodeError, LookupError, TypeError):
            pass
    return f"{reason} ({hint})"


def _locate(raw: bytes, message: str) -> str:
    """Add a line and column to msgspec's byte offset, which is what an editor shows."""
    found = re.search(r"\(byte (\d+)\)", message)
    if not found:
        return message
    offset = int(found.group(1))
    line = raw.count(b"\n", 0, offset) + 1
    column = offset - (raw.rfind(b"\n", 0, offset) + 1) + 1
    return f"{message} at line {line}, column {column}"


def encode_profile(profile: Profile) -> bytes:
    """The profile as indented JSON, as an operator would write it."""
    return msgspec.json.format(msgspec.json.encode(profile), indent=2) + b"\n"


def device_uuid(device: ProfileDevice, index: int, seed: int) -> str:
    """The device's uuid: its own if the profile gives one, else derived from seed, index, sn."""
    if device.uuid:
        return device.uuid
    return str(uuid.uuid5(SIM_NAMESPACE, f"{seed}:{index}:{device.sn}"))


# --- generation -------------------------------------------------------------------------------

#: (model_id, cpu model, cores per socket, sockets, MHz, host bridge vendor:device).
_MODELS = (
    (
        "hwf-r1u-x",
        "Intel(R) Xeon(R) Silver 4314 CPU @ 2.40GHz",
        16,
        1,
        2400.0,
        ("0x8086", "0x09a2"),
    ),
    ("hwf-r2u-x", "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", 32, 2, 2000.0, ("0x8086", "0x09a2")),
    ("hwf-r1u-e", "AMD EPYC 7313 16-Core Processor", 16, 1, 3000.0, ("0x1022", "0x1480")),
    ("hwf-edge-a", "Intel(R) Atom(TM) CPU C3758 @ 2.20GHz", 8, 1, 2200.0, ("0x8086", "0x1980")),
)
#: (vendor, device, driver, speed Mb/s).
_NICS = (
    ("0x8086", "0x1533", "igb", 1000),
    ("0x8086", "0x1521", "igb", 1000),
    ("0x8086", "0x1572", "i40e", 10000),
    ("0x15b3", "0x1017", "mlx5_core", 25000),
)
_FLAGS = ["fpu", "sse2", "ssse3", "sse4_2", "avx", "avx2", "aes", "lm", "vmx"]
_MEMORY_MB = (8192, 16384, 32768, 65536, 131072)
_DISK_SIZES = (256, 512, 1024, 2048)  # GB as drive makers count them


def generate(count: int, seed: int = 0) -> Profile:
    """``count`` plausible, distinct devices; the same (count, seed) always gives the same fleet.

    Serials are ``(seed % 10000 + 1) * 1_000_000 + index``; MACs are locally administered
    ``02:SS:SS:NN:NN:NN`` (16 bits of seed, 24 bits of index and NIC slot), so they are unique
    within a profile and across seeds that differ in their low 16 bits.
    """
    if not 1 <= count <= _MAX_GENERATED:
        raise ValueError(f"count must be from 1 to {_MAX_GENERATED}, not {count}")
    devices = [_generate_device(index, seed) for index in range(count)]
    profile = Profile(devices=devices)
    validate(profile, f"generate(count={count}, seed={seed})")
    return profile


def _generate_device(index: int, seed: int) -> ProfileDevice:
    # Not for security: a reproducible stream per device, so device i is the same whatever count.
    rng = random.Random(f"hwfleet-sim:{seed}:{index}")  # noqa: S311
    model_id, cpu_model, cores, sockets, mhz, bridge = rng.choice(_MODELS)
    nic_vendor, nic_device, driver, speed = rng.choice(_NICS)
    pci = [
        ProfilePci(address="0000:00:00.0", vendor=bridge[0], device=bridge[1], class_="0x060000"),
        ProfilePci(
            address="0000:01:00.0",
            vendor="0x144d",
            device="0xa808",
            class_="0x010802",
            driver="nvme",
        ),
    ]
    interfaces = []
    for slot in range(rng.randint(1, 4)):
        address = f"0000:{4 + slot:02x}:00.0"
        pci.append(
            ProfilePci(
                address=address,
                vendor=nic_vendor,
                device=nic_device,
                class_="0x020000",
                driver=driver,
            )
        )
        interfaces.append(
            ProfileNic(
                name=f"enp{4 + slot}s0",
                mac=_generated_mac(seed, index, slot),
                pci=address,
                driver=driver,
                speed_mbps=speed,
                carrier=slot == 0,
                mtu=1500,
            )
        )
    disks = [
        ProfileDisk(
            name=f"nvme{n}n1",
            size=rng.choice(_DISK_SIZES) * 1_000_000_000,
            rotational=False,
            model="Samsung SSD 980 PRO",
            serial=f"S5P2NG0R{rng.getrandbits(24):06X}",
            wwn=f"0x002538b{rng.getrandbits(36):09x}",
            removable=False,
            read_only=False,
        )
        for n in range(rng.randint(1, 2))
    ]
    device = ProfileDevice(
        sn=(seed % 10_000 + 1) * 1_000_000 + index,
        name=f"sim-{seed}-{index:05d}",
        model_id=model_id,
        version="1.0.0",
        interfaces=interfaces,
        pci=pci,
        memory_mb=rng.choice(_MEMORY_MB),
        cpus=[
            ProfileCpu(
                model=cpu_model,
                architecture="x86_64",
                count=cores * sockets * 2,
                cores=cores * sockets,
                sockets=sockets,
                frequency_mhz=mhz,
                flags=list(_FLAGS),
            )
        ],
        disks=disks,
    )
    device.uuid = device_uuid(device, index, seed)
    return device


def _generated_mac(seed: int, index: int, slot: int) -> str:
    number = index * _NICS_PER_DEVICE_SLOTS + slot
    octets = [0x02, (seed >> 8) & 0xFF, seed & 0xFF, number >> 16 & 0xFF, number >> 8 & 0xFF]
    octets.append(number & 0xFF)
    return ":".join(f"{octet:02x}" for octet in octets)
