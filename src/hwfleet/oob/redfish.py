"""The Redfish driver (sushy): power, Thermal/Power sensors, the SEL log, BIOS, firmware.

sushy builds typed resources for what it models well (systems, reset, BIOS); the log
service, thermal readings and firmware inventory are read as plain JSON through the
same authenticated connector, because BMCs differ most there and a missing optional
field must not fail the whole poll.
"""

from __future__ import annotations

from typing import Any, ClassVar

from hwfleet.oob.driver import (
    BmcAddress,
    BmcDriver,
    BmcError,
    FirmwareItem,
    PowerAction,
    SelEntry,
    Sensor,
    UpdateProgress,
)
from hwfleet.oob.errors import scrub, translate

_RESET = {"on": "On", "off": "ForceOff", "cycle": "PowerCycle", "reset": "ForceRestart"}
#: Redfish Severity/Health words to ours.
_HEALTH = {"ok": "ok", "warning": "warning", "critical": "critical"}
#: A SEL longer than this is cut to its newest entries (a poll must stay small).
MAX_SEL = 1000
#: Redfish TaskState values of a task that has not ended, and of one that failed.
_TASK_RUNNING = frozenset(
    {"New", "Starting", "Running", "Pending", "Stopping", "Suspended", "Service", "Interrupted"}
)
_TASK_FAILED = frozenset({"Exception", "Killed", "Cancelled", "Cancelling"})


def _health(value: object) -> str:
    return _HEALTH.get(str(value or "").lower(), "unknown")


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class RedfishDriver(BmcDriver):
    """A Redfish service at ``address`` (``http(s)://host:port``), HTTP basic auth."""

    poller_defaults: ClassVar[dict[str, float]] = {"sel": 60.0, "sdr": 60.0, "chassis": 15.0}

    def __init__(
        self, address: BmcAddress, *, timeout: float, sessions: dict[str, Any] | None = None
    ) -> None:
        super().__init__(address, timeout=timeout, sessions=sessions)
        self._root: Any = None

    def _connect(self) -> Any:
        # One sushy client per BMC and login, kept between calls: building one costs an HTTP
        # session and a service-root GET, most of a poll's CPU (bench/pollers.py).
        a = self.address
        key = f"redfish|{a.address}|{a.username}|{hash(a.password)}|{a.verify_tls}"
        if self._root is None:
            self._root = self.sessions.get(key)
        if self._root is None:
            import sushy
            from sushy import auth

            a = self.address
            with translate(a):
                self._root = sushy.Sushy(
                    a.address.rstrip("/"),
                    verify=a.verify_tls,
                    auth=auth.BasicAuth(a.username, a.password),
                    server_side_retries=0,
                    read_timeout=self.timeout,
                    connect_timeout=self.timeout,
                )
            self.sessions[key] = self._root
        return self._root

    def _get(self, path: str) -> dict[str, Any]:
        root = self._connect()
        with translate(self.address):
            body = root._conn.get(path).json()
        if not isinstance(body, dict):
            raise BmcError("protocol", f"{path} answered {type(body).__name__}, not an object")
        return body

    def _members(self, path: str) -> list[str]:
        members = self._get(path).get("Members") or []
        return [m["@odata.id"] for m in members if isinstance(m, dict) and "@odata.id" in m]

    def _system(self) -> Any:
        root = self._connect()
        with translate(self.address):
            if self.address.system:
                return root.get_system(f"/redfish/v1/Systems/{self.address.system}")
            return root.get_system()

    def power(self, action: PowerAction) -> str:
        system = self._system()
        with translate(self.address):
            if action != "status":
                wanted = _RESET[action]
                allowed = {v.value for v in system.get_allowed_reset_system_values()}
                if wanted == "PowerCycle" and wanted not in allowed:
                    wanted = "ForceRestart"  # many BMCs offer no PowerCycle: restart instead
                from sushy import ResetType

                if wanted not in allowed:
                    raise BmcError("unsupported", f"this system does not offer {wanted}")
                system.reset_system(ResetType(wanted))
                system.refresh()
            state = system.power_state
        value = str(getattr(state, "value", state) or "unknown").lower()
        return {"poweringon": "on", "poweringoff": "off"}.get(value, value)

    def chassis(self) -> dict[str, Any]:
        system = self._system()
        with translate(self.address):
            state = system.power_state
            health = system.status.health if system.status is not None else None
        power = str(getattr(state, "value", state) or "unknown").lower()
        return {"power": power, "health": _health(getattr(health, "value", health))}

    def sensors(self) -> list[Sensor]:
        out: list[Sensor] = []
        for chassis in self._members("/redfish/v1/Chassis"):
            body = self._get(chassis)
            if "Thermal" in body:
                thermal = self._get(body["Thermal"]["@odata.id"])
                for t in thermal.get("Temperatures") or []:
                    out.append(self._sensor(t, "temperature", "ReadingCelsius", "C"))
                for f in thermal.get("Fans") or []:
                    out.append(self._sensor(f, "fan", "Reading", str(f.get("ReadingUnits") or "")))
            if "Power" in body:
                power = self._get(body["Power"]["@odata.id"])
                for v in power.get("Voltages") or []:
                    out.append(self._sensor(v, "voltage", "ReadingVolts", "V"))
        return out

    @staticmethod
    def _sensor(item: dict[str, Any], kind: str, field: str, units: str) -> Sensor:
        status = item.get("Status") or {}
        return Sensor(
            name=str(item.get("Name") or item.get("MemberId") or "?"),
            kind=kind,
            value=_number(item.get(field)),
            units=units,
            health=_health(status.get("Health")) if isinstance(status, dict) else "unknown",
            upper_critical=_number(item.get("UpperThresholdCritical")),
            lower_critical=_number(item.get("LowerThresholdCritical")),
        )

    def _log_services(self) -> list[str]:
        """The system's log services, then each manager's (where BMCs keep the SEL)."""
        paths: list[str] = []
        system = self._get(self._system().path)
        if "LogServices" in system:
            paths += self._members(system["LogServices"]["@odata.id"])
        for manager in self._members("/redfish/v1/Managers"):
            body = self._get(manager)
            if "LogServices" in body:
                paths += self._members(body["LogServices"]["@odata.id"])
        return paths

    def sel(self) -> list[SelEntry]:
        services = self._log_services()
        if not services:
            raise BmcError("unsupported", "this Redfish service offers no log service (SEL)")
        # Prefer the one named SEL: other logs (Lclog, audit) are not the event log.
        chosen = next(
            (p for p in services if p.rstrip("/").rsplit("/", 1)[-1].upper() == "SEL"), services[0]
        )
        service = self._get(chosen)
        entries = self._get(service.get("Entries", {}).get("@odata.id", chosen + "/Entries"))
        out = []
        for e in (entries.get("Members") or [])[-MAX_SEL:]:
            if not isinstance(e, dict):
                continue
            out.append(
                SelEntry(
                    id=str(e.get("Id") or ""),
                    timestamp=str(e.get("Created") or ""),
                    severity=_health(e.get("Severity")),
                    message=str(e.get("Message") or ""),
                    sensor=str(e.get("SensorType") or ""),
                )
            )
        return out

    def _bios(self) -> Any:
        from sushy import exceptions as sushy_errors

        system = self._system()
        try:
            return system.bios
        except sushy_errors.MissingAttributeError:
            # Seen on sushy-tools' stock fake driver: the system links no Bios resource.
            raise BmcError("unsupported", "this Redfish system has no Bios resource") from None

    def bios(self) -> dict[str, Any]:
        with translate(self.address):
            bios = self._bios()
            bios.refresh()
            return dict(bios.attributes)

    def set_bios(self, attributes: dict[str, Any]) -> None:
        with translate(self.address):
            self._bios().set_attributes(attributes)

    def firmware(self) -> list[FirmwareItem]:
        from sushy import exceptions as sushy_errors

        items = []
        inventory = "/redfish/v1/UpdateService/FirmwareInventory"
        root = self._connect()
        with translate(self.address):
            try:
                body = root._conn.get(inventory).json()
            except sushy_errors.ResourceNotFoundError:
                raise BmcError("unsupported", f"this Redfish service has no {inventory}") from None
        listed = body.get("Members") or [] if isinstance(body, dict) else []
        members = [m["@odata.id"] for m in listed if isinstance(m, dict) and "@odata.id" in m]
        for path in members:
            body = self._get(path)
            items.append(
                FirmwareItem(
                    component=str(body.get("Id") or path.rsplit("/", 1)[-1]),
                    version=str(body.get("Version") or ""),
                )
            )
        return items

    def start_update(self, image_uri: str, component: str) -> str:
        root = self._connect()
        target = f"/redfish/v1/UpdateService/FirmwareInventory/{component}"
        with translate(self.address):
            service = root.get_update_service()
            monitor = service.simple_update(image_uri, targets=[target])
        return str(monitor.task_monitor_uri)

    def update_progress(self, monitor: str) -> UpdateProgress:
        """Read the task monitor once: 202 (or a Task still running) is running.

        Some BMCs hand out the monitor, which answers 202 until the work ends; others the
        Task resource itself, which answers 200 with its TaskState. A monitor that is gone
        (404) after a restart means the BMC finished and forgot it: the read-back decides.
        """
        from sushy import exceptions as sushy_errors

        root = self._connect()
        with translate(self.address):
            try:
                response = root._conn.get(path=monitor)
            except sushy_errors.ResourceNotFoundError:
                return UpdateProgress(state="done", message="the BMC no longer lists the task")
            try:
                body = response.json() if response.content else {}
            except ValueError:
                body = {}  # a monitor may answer 202 with no JSON at all
        if not isinstance(body, dict):
            body = {}
        percent = _number(body.get("PercentComplete"))
        state = str(body.get("TaskState") or "")
        if response.status_code == 202 or state in _TASK_RUNNING:
            return UpdateProgress(state="running", percent=percent)
        if state in _TASK_FAILED or str(body.get("TaskStatus") or "") == "Critical":
            messages = [
                str(m.get("Message") or "")
                for m in body.get("Messages") or []
                if isinstance(m, dict) and m.get("Message")
            ]
            detail = "; ".join(messages) or f"task {state or 'failed'}"
            return UpdateProgress(
                state="failed", percent=percent, message=scrub(detail, self.address)
            )
        return UpdateProgress(state="done", percent=100.0)

    def close(self) -> None:
        self._root = None
