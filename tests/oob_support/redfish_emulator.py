"""sushy-tools' Redfish emulator with what its fake driver lacks, for the oob tests.

Run as ``python -m tests.oob_support.redfish_emulator --port P --auth-file F --state-dir D``.
Added to the fake driver: BIOS attributes, firmware versions (a FirmwareInventory),
immediate power changes (the stock driver applies them 1-11 s later, at random),
a SEL log service, and thermal readings the test can change. SimpleUpdate is replaced
by one that downloads the image, checks it is a firmware image for the target
component and installs the version written in it, as a real BMC would.

Test-only controls (no auth, emulator only): ``POST /_test/sel`` appends a SEL entry,
``POST /_test/thermal`` sets the CPU temperature, ``POST /_test/garbage`` makes every
Redfish answer invalid JSON from then on, ``POST /_test/slow_update {"on": true}`` makes
SimpleUpdate answer 202 with a task monitor that runs until ``POST /_test/task`` finishes
(or fails) it, and ``GET /_test/state`` counts the SimpleUpdate calls.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import flask
import requests
from sushy_tools.emulator import main as emu
from sushy_tools.emulator.resources.systems import fakedriver

FW_MAGIC = b"HWFLEET-FW "
SYSTEM = "fake"


class ExtendedFakeDriver(fakedriver.FakeDriver):
    def set_power_state(self, identity: str, state: str) -> None:
        system = self._get(identity)
        if state in ("On", "ForceOn"):
            new = "On"
        elif state in ("ForceOff", "GracefulShutdown"):
            new = "Off"
        elif state in ("ForceRestart", "GracefulRestart", "PowerCycle"):
            new = "On"
            system["cycles"] = system.get("cycles", 0) + 1
        else:
            raise emu.error.NotSupportedError(f"Power state {state} is not supported")
        self._update(system, power_state=new, pending_power=None)

    def get_bios(self, identity: str) -> dict[str, Any]:
        return dict(
            self._get(identity).get("bios")
            or {"BootMode": "Uefi", "ProcTurboMode": "Enabled", "SriovEnable": "Disabled"}
        )

    def set_bios(self, identity: str, attributes: dict[str, Any]) -> None:
        bios = self.get_bios(identity)
        bios.update(attributes)
        self._update(identity, bios=bios)

    def reset_bios(self, identity: str) -> None:
        self._update(identity, bios=None)

    def get_versions(self, identity: str) -> dict[str, str]:
        return dict(self._get(identity).get("versions") or {"BIOS": "1.0.0", "BMC": "2.0.0"})

    def set_versions(self, identity: str, versions: dict[str, str]) -> None:
        current = self.get_versions(identity)
        current.update(versions)
        self._update(identity, versions=current)


STATE: dict[str, Any] = {
    "sel": [],
    "cpu_temp": 41.0,
    "garbage": False,
    # SimpleUpdate as a real BMC does it (202 and a task monitor) instead of at once.
    "slow_update": False,
    "updates": 0,
}
#: Update tasks by id: {"state", "percent", "component", "version", "message"}.
TASKS: dict[str, dict[str, Any]] = {}


def _uuid() -> str:
    return str(emu.app.systems.uuid(SYSTEM))


def _task_body(task_id: str) -> dict[str, Any]:
    task = TASKS[task_id]
    body = {
        "@odata.id": f"/redfish/v1/TaskService/Tasks/{task_id}",
        "@odata.type": "#Task.v1_4_3.Task",
        "Id": task_id,
        "Name": f"update {task['component']}",
        "TaskState": task["state"],
        "TaskStatus": "Critical" if task["state"] == "Exception" else "OK",
        "PercentComplete": task["percent"],
    }
    if task["message"]:
        body["Messages"] = [{"Message": task["message"]}]
    return body


def install(app: flask.Flask) -> None:
    fakedriver.FakeDriver = ExtendedFakeDriver  # main.py looks the class up at first use

    @app.before_request
    def garbage() -> Any:
        if STATE["garbage"] and flask.request.path.startswith("/redfish"):
            return flask.Response(b"\x00<html>not json{", 200, {"Content-Type": "application/json"})
        return None

    @app.after_request
    def link_logs(response: flask.Response) -> flask.Response:
        # The stock system resource has no LogServices link; a real one does.
        path = flask.request.path.rstrip("/")
        if path.startswith("/redfish/v1/Systems/") and path.count("/") == 4 and response.is_json:
            body = response.get_json()
            if isinstance(body, dict):
                body["LogServices"] = {"@odata.id": f"{path}/LogServices"}
                response.set_data(json.dumps(body))
        return response

    @app.route("/redfish/v1/Systems/<identity>/LogServices")
    def log_services(identity: str) -> Any:
        base = f"/redfish/v1/Systems/{identity}/LogServices"
        return {"Members": [{"@odata.id": f"{base}/SEL"}], "Members@odata.count": 1}

    @app.route("/redfish/v1/Systems/<identity>/LogServices/SEL")
    def sel_service(identity: str) -> Any:
        base = f"/redfish/v1/Systems/{identity}/LogServices/SEL"
        return {"Id": "SEL", "Entries": {"@odata.id": f"{base}/Entries"}}

    @app.route("/redfish/v1/Systems/<identity>/LogServices/SEL/Entries")
    def sel_entries(identity: str) -> Any:
        return {"Members": STATE["sel"], "Members@odata.count": len(STATE["sel"])}

    def thermal(identity: str) -> Any:
        t = STATE["cpu_temp"]
        return {
            "Id": "Thermal",
            "Temperatures": [
                {
                    "MemberId": "0",
                    "Name": "CPU Temp",
                    "ReadingCelsius": t,
                    "UpperThresholdCritical": 90,
                    "Status": {"Health": "OK" if t < 90 else "Critical"},
                },
                {
                    "MemberId": "1",
                    "Name": "Inlet Temp",
                    "ReadingCelsius": 24,
                    "UpperThresholdCritical": 45,
                    "Status": {"Health": "OK"},
                },
            ],
            "Fans": [
                {
                    "MemberId": "0",
                    "Name": "Fan 1",
                    "Reading": 4200,
                    "ReadingUnits": "RPM",
                    "Status": {"Health": "OK"},
                }
            ],
        }

    app.view_functions["thermal_resource"] = thermal

    @app.route("/redfish/v1/UpdateService/FirmwareInventory")
    def inventory() -> Any:
        names = sorted(emu.app.systems.get_versions(_uuid()))
        members = [{"@odata.id": f"/redfish/v1/UpdateService/FirmwareInventory/{n}"} for n in names]
        return {"Members": members, "Members@odata.count": len(members)}

    @app.route("/redfish/v1/UpdateService/FirmwareInventory/<name>")
    def inventory_item(name: str) -> Any:
        versions = emu.app.systems.get_versions(_uuid())
        if name not in versions:
            return {"error": {"message": f"no component {name}"}}, 404
        return {"Id": name, "Name": name, "Version": versions[name], "Updateable": True}

    def simple_update() -> Any:
        body = flask.request.get_json(silent=True) or {}
        uri, targets = body.get("ImageURI"), body.get("Targets") or []
        if not uri or len(targets) != 1:
            return {"error": {"message": "ImageURI and one Target are required"}}, 400
        component = str(targets[0]).rstrip("/").rsplit("/", 1)[-1]
        try:
            image = requests.get(uri, timeout=10).content
        except requests.RequestException as exc:
            return {"error": {"message": f"cannot fetch image: {exc}"}}, 400
        header = image.split(b"\n", 1)[0]
        if not header.startswith(FW_MAGIC):
            return {"error": {"message": "not a firmware image"}}, 400
        fields = dict(f.split("=", 1) for f in header[len(FW_MAGIC) :].decode().split())
        if fields.get("component") != component:
            return {
                "error": {"message": f"image is for {fields.get('component')}, not {component}"}
            }, 400
        STATE["updates"] += 1
        if STATE["slow_update"]:
            # Installs only when the test says so (POST /_test/task): a BMC flashing.
            task_id = str(len(TASKS) + 1)
            TASKS[task_id] = {
                "state": "Running",
                "percent": 0,
                "component": component,
                "version": fields["version"],
                "message": "",
            }
            location = f"/redfish/v1/TaskService/Tasks/{task_id}"
            return _task_body(task_id), 202, {"Location": location}
        emu.app.systems.set_versions(_uuid(), {component: fields["version"]})
        # Done at once; the Location names the (finished) task, as sushy requires one.
        return "", 204, {"Location": "/redfish/v1/TaskService/Tasks/1"}

    app.view_functions["UpdateService.update_service_simple_update"] = simple_update

    @app.route("/redfish/v1/TaskService/Tasks/<task>")
    def task_resource(task: str) -> Any:
        if task not in TASKS:  # the immediate update's (finished) task
            return {
                "@odata.type": "#Task.v1_4_3.Task",
                "Id": task,
                "Name": "firmware update",
                "TaskState": "Completed",
                "TaskStatus": "OK",
                "PercentComplete": 100,
            }
        # A task monitor: 202 while the update runs, then the finished Task (200).
        running = TASKS[task]["state"] == "Running"
        return _task_body(task), 202 if running else 200

    @app.route("/_test/task", methods=["POST"])
    def drive_task() -> Any:
        """``{"id", "percent"?, "finish"?: true, "fail"?: message}``: move a slow update on."""
        body = flask.request.get_json()
        task = TASKS[str(body["id"])]
        if "percent" in body:
            task["percent"] = body["percent"]
        if body.get("finish"):
            emu.app.systems.set_versions(_uuid(), {task["component"]: task["version"]})
            task.update(state="Completed", percent=100)
        if body.get("fail"):
            task.update(state="Exception", message=str(body["fail"]))
        return {"ok": True}

    @app.route("/_test/slow_update", methods=["POST"])
    def set_slow_update() -> Any:
        STATE["slow_update"] = bool(flask.request.get_json()["on"])
        return {"ok": True}

    @app.route("/_test/state", methods=["GET"])
    def test_state() -> Any:
        return {"updates": STATE["updates"], "tasks": TASKS}

    @app.route("/_test/sel", methods=["POST"])
    def add_sel() -> Any:
        entry = flask.request.get_json()
        entry.setdefault("Id", str(len(STATE["sel"]) + 1))
        entry.setdefault("Created", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        STATE["sel"].append(entry)
        return {"ok": True}

    @app.route("/_test/thermal", methods=["POST"])
    def set_thermal() -> Any:
        STATE["cpu_temp"] = float(flask.request.get_json()["cpu"])
        return {"ok": True}

    @app.route("/_test/garbage", methods=["POST"])
    def set_garbage() -> Any:
        STATE["garbage"] = True
        return {"ok": True}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--auth-file", required=True)
    parser.add_argument("--state-dir", required=True)
    args = parser.parse_args()
    app = emu.app
    app.configure(
        extra_config={
            "SUSHY_EMULATOR_AUTH_FILE": args.auth_file,
            "SUSHY_EMULATOR_FAKE_DRIVER": True,
            "SUSHY_EMULATOR_STATE_DIR": args.state_dir,
        }
    )
    install(app)
    app.run(host="127.0.0.1", port=args.port, threaded=True)


if __name__ == "__main__":
    main()
