"""``standby.run_image`` on a loop device: config drive written, kernel found from grub.

``boot: false`` stops before ``kexec -e``/reboot (this machine must keep running);
the decision and every step are in the task's result.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

from tests.integration.controller.conftest import connected_fleet
from tests.integration.hardware.conftest import Attach
from tests.integration.imaging.conftest import MIB, Agent, add_image, image_port, run

from hwfleet.agent.imaging.boot import parse_grub
from hwfleet.controller.app import Controller
from hwfleet.settings import AgentSettings
from hwfleet.sim.profiles import generate

GRUB = """set default="1"
menuentry 'rescue' { linux /boot/vmlinuz-rescue single }
menuentry 'Debian' {
    linux /boot/vmlinuz-test root=UUID=1234 ro quiet
    initrd /boot/initrd.img-test
}
"""


def boot_partition(tmp_path: Path, size: int) -> Path:
    """An ext4 file system of ``size`` bytes holding grub.cfg, a kernel and an initrd."""
    tree = tmp_path / "tree"
    (tree / "boot" / "grub").mkdir(parents=True)
    (tree / "boot" / "grub" / "grub.cfg").write_text(GRUB)
    (tree / "boot" / "vmlinuz-test").write_bytes(b"not really a kernel")
    (tree / "boot" / "initrd.img-test").write_bytes(b"initrd")
    part = tmp_path / "p1.img"
    with part.open("wb") as handle:
        handle.truncate(size)
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-d", str(tree), str(part)], check=True, capture_output=True
    )
    return part


def build_disk(tmp_path: Path) -> Path:
    """An 8 MiB MBR disk: partition 1 (ext4, bootable) with grub.cfg, kernel and initrd."""
    part = boot_partition(tmp_path, 6 * MIB)
    mbr = bytearray(512)
    mbr[446:462] = (
        bytes([0x80, 0, 0, 0, 0x83, 0, 0, 0])
        + (2048).to_bytes(4, "little")
        + (6 * MIB // 512).to_bytes(4, "little")
    )
    mbr[510:512] = b"\x55\xaa"
    disk = tmp_path / "disk.raw"
    with disk.open("wb") as handle:
        handle.write(mbr)
        handle.seek(MIB)
        handle.write(part.read_bytes())
        handle.truncate(8 * MIB)
    return disk


def test_grub_default_entry_is_chosen() -> None:
    entry = parse_grub(GRUB)
    assert entry is not None
    assert (entry.kernel, entry.initrd) == ("/boot/vmlinuz-test", "/boot/initrd.img-test")
    assert entry.cmdline == "root=UUID=1234 ro quiet"
    assert parse_grub("menuentry 'x' { echo no kernel }") is None


async def test_run_image_writes_the_config_drive_and_finds_the_kernel(
    controller: Controller, agent: Agent, loop_device: Attach, tmp_path: Path
) -> None:
    disk = await asyncio.to_thread(build_disk, tmp_path)
    image = await add_image(controller, disk)
    device = loop_device(16 * MIB, random=False)
    reply = await run(controller, agent, "standby.prepare_image", image=image["id"], device=device)
    assert reply["task"]["state"] == "complete", reply
    configdrive = {
        "meta_data": {"uuid": "abc", "hostname": "node-1"},
        "user_data": "#cloud-config\nhostname: node-1\n",
        "network_data": {"links": [], "networks": [], "services": []},
    }
    reply = await run(
        controller,
        agent,
        "standby.run_image",
        image=image["id"],
        device=device,
        configdrive=configdrive,
        boot=False,
    )
    task = reply["task"]
    assert task["state"] == "complete", task
    result = task["result"]
    assert result["action"] == "kexec" and result["booting"] is False
    assert result["kernel"]["kernel"] == "/boot/vmlinuz-test"
    assert result["kernel"]["cmdline"] == "root=UUID=1234 ro quiet"
    assert result["partition"] == 1
    # Partition 2 is the config drive: an ISO 9660 labelled config-2 with the documents.
    with open(device, "rb") as handle:
        entry = handle.read(512)[446 + 16 : 446 + 32]
        start = int.from_bytes(entry[8:12], "little") * 512
        handle.seek(start)
        iso = tmp_path / "cd.iso"
        iso.write_bytes(handle.read(int.from_bytes(entry[12:16], "little") * 512))
    label = await asyncio.to_thread(isoinfo, "-d", "-i", str(iso))
    assert "Volume id: config-2" in label
    path = "/openstack/latest/"
    meta = await asyncio.to_thread(isoinfo, "-J", "-i", str(iso), "-x", path + "meta_data.json")
    assert json.loads(meta) == configdrive["meta_data"]
    user = await asyncio.to_thread(isoinfo, "-J", "-i", str(iso), "-x", path + "user_data")
    assert user == configdrive["user_data"]
    network = await asyncio.to_thread(
        isoinfo, "-J", "-i", str(iso), "-x", path + "network_data.json"
    )
    assert json.loads(network) == configdrive["network_data"]


def isoinfo(*args: str) -> str:
    return subprocess.run(["isoinfo", *args], capture_output=True, text=True, check=True).stdout


async def test_a_simulated_device_walks_the_same_steps_on_a_file_backed_disk(
    controller: Controller, tmp_path: Path, deadline: float
) -> None:
    disk = await asyncio.to_thread(build_disk, tmp_path)
    image = await add_image(controller, disk)
    profile = generate(1, seed=5)
    async with connected_fleet(controller, profile, 5, tmp_path / "sim", deadline) as sim:
        runtime = sim.devices[0].runtime
        # As `hwfleet agent --simulate` would have it (run_agent hands the runtime its settings).
        runtime.settings = AgentSettings(
            data_dir=str(runtime.local.data_dir), image_server=f"127.0.0.1:{image_port(controller)}"
        )
        sim_agent = Agent(runtime.info.uuid, tmp_path, tmp_path, None)  # type: ignore[arg-type]
        reply = await run(
            controller, sim_agent, "standby.prepare_image", image=image["id"], device="nvme0n1"
        )
        assert reply["task"]["state"] == "complete", reply["task"].get("msg")
        reply = await run(
            controller,
            sim_agent,
            "standby.run_image",
            image=image["id"],
            device="/dev/nvme0n1",
            configdrive={"meta_data": {"uuid": "sim"}},
        )
        task = reply["task"]
        assert task["state"] == "complete", task
        result = task["result"]
        assert result["simulated"] is True and result["booting"] is False
        assert result["action"] == "kexec" and result["kernel"]["kernel"] == "/boot/vmlinuz-test"
        assert any("config drive" in step for step in result["steps"])
        assert runtime.local.data_dir is not None
        with (runtime.local.data_dir / "disks" / "nvme0n1.img").open("rb") as handle:
            written = handle.read(7 * MIB)  # of a sparse 256 GB file
        assert written[MIB : 7 * MIB] == disk.read_bytes()[MIB : 7 * MIB]
        reply = await run(
            controller, sim_agent, "standby.prepare_image", image=image["id"], device="sdz"
        )
        assert "no such disk" in reply["cli_error"]
