"""UEFI boot entries: efibootmgr's listing read back, the ESP's loader chosen, BIOS left alone.

The entry's creation itself runs against real firmware variables in the UEFI qemu test
(tests/integration/imaging/test_qemu_reimage.py); here, what the agent decides from what it reads.
"""

from __future__ import annotations

from pathlib import Path

from hwfleet.agent.imaging.boot import BootPlan
from hwfleet.agent.imaging.efi import ENTRY_LABEL, find_loader, parse_efibootmgr, uefi_default

#: efibootmgr 17 (Debian 12) in an OVMF VM after ``-c``: the label, a tab, the device path.
LISTING = """\
BootCurrent: 0001
Timeout: 0 seconds
BootOrder: 0004,0001,0000,0002,0003
Boot0000* UiApp\tFvVol(7cb8bdc9-f8eb-4f34-aaea-3ee4af6516a1)/FvFile(462caa21-7614)
Boot0001* UEFI QEMU HARDDISK QM00001 \tPciRoot(0x0)/Pci(0x1,0x1)/Ata(0,0,0)
Boot0002* EFI Internal Shell\tFvVol(7cb8bdc9-f8eb-4f34)/FvFile(7c04a583-9e3e-4f1c)
Boot0003  disabled entry\tFvVol(7cb8bdc9)
Boot0004* hwfleet image\tHD(1,GPT,0f1c2d3e-0000,0x800,0x4000)/File(\\EFI\\BOOT\\BOOTX64.EFI)
"""


def test_the_listing_gives_the_order_and_every_label_active_or_not() -> None:
    found = parse_efibootmgr(LISTING)
    assert found.order == ["0004", "0001", "0000", "0002", "0003"]
    assert found.labels["0004"] == ENTRY_LABEL
    assert found.labels["0001"] == "UEFI QEMU HARDDISK QM00001"
    assert found.labels["0003"] == "disabled entry"
    assert found.numbers_labelled(ENTRY_LABEL) == ["0004"]


def test_an_older_efibootmgr_without_paths_and_lower_case_numbers() -> None:
    found = parse_efibootmgr("BootOrder: 000a,0001\nBoot000a* hwfleet image\nBoot0001* disk\n")
    assert found.order == ["000A", "0001"]
    assert found.numbers_labelled(ENTRY_LABEL) == ["000A"]


def test_no_boot_order_reads_as_empty() -> None:
    assert parse_efibootmgr("EFI variables are not supported on this system.\n").order == []


def _touch(root: Path, rel: str) -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(b"MZ")


def test_shim_wins_over_grub_and_the_fallback_whatever_the_case(tmp_path: Path) -> None:
    _touch(tmp_path, "EFI/BOOT/BOOTX64.EFI")
    _touch(tmp_path, "EFI/debian/grubx64.efi")
    assert find_loader(tmp_path) == "\\EFI\\debian\\grubx64.efi"
    _touch(tmp_path, "efi/Debian/SHIMX64.EFI")
    assert find_loader(tmp_path) == "\\efi\\Debian\\SHIMX64.EFI"


def test_the_fallback_path_and_no_loader(tmp_path: Path) -> None:
    assert find_loader(tmp_path) is None
    _touch(tmp_path, "EFI/BOOT/README.txt")
    _touch(tmp_path, "bootx64.efi")  # not where firmware looks
    assert find_loader(tmp_path) is None
    _touch(tmp_path, "EFI/BOOT/bootx64.efi")
    assert find_loader(tmp_path) == "\\EFI\\BOOT\\bootx64.efi"


def test_bios_and_a_disk_without_esp_leave_the_firmware_alone(tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    mbr = bytearray(512)
    mbr[446:462] = bytes([0x80, 0, 0, 0, 0x83, 0, 0, 0]) + (2048).to_bytes(4, "little") * 2
    mbr[510:512] = b"\x55\xaa"
    disk.write_bytes(bytes(mbr) + bytes(4 * 1024 * 1024))
    plan = BootPlan()
    uefi_default(str(disk), plan, firmware=str(tmp_path / "no-efi"))
    assert plan.steps == ["BIOS: the image's own MBR boot code is the disk's boot loader"]
    firmware = tmp_path / "efi"
    firmware.mkdir()
    plan = BootPlan()
    uefi_default(str(disk), plan, firmware=str(firmware))
    assert plan.steps == ["UEFI: the image has no EFI system partition; boot order unchanged"]
