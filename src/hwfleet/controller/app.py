"""The composition root: builds every part of the controller from one settings object."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import secrets
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import uvicorn

from hwfleet import web
from hwfleet.api.app import create_app
from hwfleet.api.auth import load_or_create_token
from hwfleet.api.deps import ApiServices, provide
from hwfleet.bus import open_bus
from hwfleet.bus.base import Bus

if TYPE_CHECKING:
    from hwfleet.boot.service import BootService
from hwfleet.controller.devices import DeviceRegistry
from hwfleet.controller.discovery import DiscoveryRecorder, EnrolledKeys, build_browser
from hwfleet.controller.events import EventPublisher
from hwfleet.controller.links import (
    Admission,
    AgentMethods,
    AnonymousGuard,
    AnonymousLimits,
    BusGateway,
    SenderCheck,
    StreamGateway,
)
from hwfleet.controller.oob import Oob
from hwfleet.controller.ops import LiveConfig, default_settings, log_shipping
from hwfleet.controller.outbox import OutboxWorker
from hwfleet.controller.retention import Pruner
from hwfleet.controller.scan import ScanBridge, ScanService
from hwfleet.controller.tasks import TaskService
from hwfleet.discovery import DiscoveryBrowser
from hwfleet.integrations.mes import MesClient
from hwfleet.integrations.rabbitmq_policy import apply_hwinfo_policy
from hwfleet.settings import ServerSettings, SettingsError, fix_for
from hwfleet.store import Store, open_store
from hwfleet.trust import EnrollmentService
from hwfleet.types import parse_host_port
from hwfleet.workflows.service import GraphService

if TYPE_CHECKING:
    from hwfleet.images.registry import ImageRegistry
    from hwfleet.images.server import ImageServer
    from hwfleet.store.images import ImageRecord

log = logging.getLogger(__name__)


class Controller:
    """Owns the parts; ``start`` brings them up in dependency order, ``close`` in reverse."""

    def __init__(self, settings: ServerSettings, *, bus: Bus | None = None) -> None:
        """``bus``: share an already-started bus (tests, the demo); otherwise open one."""
        self.settings = settings
        self._shared_bus = bus
        self.store: Store
        self.bus: Bus
        self.events: EventPublisher
        self.devices: DeviceRegistry
        self.tasks: TaskService
        self.config: LiveConfig
        self.admission: Admission
        self.keys: EnrollmentService
        self.bus_gateway: BusGateway
        self.discovery: DiscoveryBrowser
        self.discovery_keys: EnrolledKeys
        self.gateway: StreamGateway
        self.mes: MesClient
        self.outbox: OutboxWorker
        self.scans: ScanService
        self.images: ImageRegistry
        self.image_server: ImageServer | None = None
        self.graphs: GraphService
        self.pruner: Pruner
        self.boot: BootService | None = None
        self.oob: Oob | None = None
        self.operator_token = ""
        self.api_url = ""
        self._api_server: uvicorn.Server | None = None
        self._api_task: asyncio.Task[Any] | None = None
        self._closers: list[Any] = []

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise

    async def _start(self) -> None:
        s = self.settings
        # --- scale: one descriptor per agent link; a storm must not run out (issue 18) ---
        from hwfleet.controller.fdlimit import raise_open_file_limit

        raise_open_file_limit()
        self.operator_token = load_or_create_token(s.data_dir)
        self.store = await open_store(s.db_url())
        self._closers.append(self.store.close)
        if self._shared_bus is not None:
            self.bus = self._shared_bus
        else:
            self.bus = open_bus(s.bus, hwinfo_quorum=s.scan_queue_quorum)
            await self.bus.start()
            self._closers.append(self.bus.close)
            self._apply_bus_policy()
        self.events = EventPublisher(self.store, self.bus)

        self.config = LiveConfig(
            self.store, self.events, default_settings(s.scan_quiet_timeout, s.log_level)
        )
        self.config.on_change("log_level", _apply_log_level)
        await self.config.load()
        await self.config.serve(self.bus)
        self._closers.append(self.config.close)

        self.devices = DeviceRegistry(
            self.store,
            self.events,
            offline_after=s.offline_after,
            call_timeout=s.call_timeout,
            # Replicas need a shared broker: on an in-process bus this controller is alone.
            sole=self.bus.url.startswith("memory:"),
        )
        if s.offline_after < 2 * s.heartbeat_interval:
            log.warning(
                "offline_after (%g s) is less than two heartbeat intervals (%g s): one late "
                "heartbeat will show a healthy device offline",
                s.offline_after,
                s.heartbeat_interval,
            )
        await self.devices.start()
        self._closers.append(self.devices.close)
        # --- mdp: mirror devices' diagnostics keys to .known_machines, collect reports ---
        from hwfleet.mdp.custody import KeyCustody

        self.mdp_keys = KeyCustody(s.data_dir, timeout=s.call_timeout)
        self.devices.on_attach(self.mdp_keys.on_attach)
        self._closers.append(self.mdp_keys.close)
        if s.mdp_report_listen:
            from hwfleet.mdp.reports import ReportCollector

            mdp_host, mdp_port = parse_host_port(s.mdp_report_listen, allow_any_port=True)
            self.mdp_reports = ReportCollector(s.data_dir, mdp_host, mdp_port)
            with _listening("mdp_report_listen", mdp_host, mdp_port, "diagnostics reports"):
                await self.mdp_reports.start()
            self._closers.append(self.mdp_reports.close)
        # --- end mdp ---
        self.tasks = TaskService(self.store, self.devices, self.events)
        self._closers.append(self.tasks.close)
        host, port = parse_host_port(s.agent_listen, allow_any_port=True)
        self.admission = Admission(s, self.store, self.events, self.devices, host)
        self.keys = self.admission.keys
        methods = AgentMethods(
            self.devices, self.tasks, self.bus, identity_check=self.admission.check_handshake
        )
        self.admission.install(methods)
        self._closers.append(self.admission.close)  # --- scale: the enrollment queue ---

        bridge = ScanBridge(self.bus, self.devices, call_timeout=s.call_timeout)
        await bridge.start()
        self._closers.append(bridge.close)

        replica = s.replica_id or f"{socket.gethostname()}-{secrets.token_hex(4)}"
        # One sender check for every consumer of device messages (it warns once per process).
        senders = SenderCheck.for_controller(s, self.bus)
        await self._start_scans(replica, senders)
        bridge.unanswered = self.scans.unanswered
        bridge.answered = self.scans.answered
        log_handler = await log_shipping.attach(self.bus, replica)
        self._closers.append(lambda: log_shipping.detach(log_handler))
        self.bus_gateway = BusGateway(
            self.bus,
            methods,
            self.devices,
            self.store,
            replica_id=replica,
            call_timeout=s.call_timeout,
            senders=senders,
        )
        await self.bus_gateway.start()
        self.devices.reach_with(self.bus_gateway.reach)
        self._closers.append(self.bus_gateway.close)

        self.discovery_keys = EnrolledKeys(self.store)
        await self.discovery_keys.start(self.bus)
        self._closers.append(self.discovery_keys.close)
        self.discovery = build_browser(self.discovery_keys, s.discovery_interface, s.discovery_port)
        await self.discovery.start()
        self._closers.append(self.discovery.close)
        recorder = DiscoveryRecorder(self.discovery, self.store, self.events)
        await recorder.start()
        self._closers.append(recorder.close)

        # --- cli: history retention ---
        self.pruner = Pruner(self.store, s)
        await self.pruner.start()
        self._closers.append(self.pruner.close)
        # --- end cli ---
        # --- boot --- DHCP (Kea), TFTP and HTTP boot, only on the interface the operator names.
        if not s.boot_interface and (s.dhcp_range or s.dhcp_proxy):
            # Serving nothing silently would look like a broken DHCP server to the operator.
            raise SettingsError(
                "--dhcp-range and --dhcp-proxy need --boot-interface IF (the interface to serve)",
                setting="boot_interface",
            )
        if s.boot_interface:
            from hwfleet.boot.profiles import BusGraphProfiles
            from hwfleet.boot.service import BootService

            self.boot = BootService(
                s,
                self.store,
                self.bus,
                self.events,
                issue_token=self.keys.create_token,
                graphs=BusGraphProfiles(self.bus),
                ca_fingerprint=self.admission.ca.fingerprint(),
            )
            await self.boot.start()
            self._closers.append(self.boot.close)

        self.gateway = StreamGateway(
            methods,
            self.devices,
            host=host,
            port=port,
            call_timeout=s.call_timeout,
            handshake_timeout=s.handshake_timeout,
            ssl_context=self.admission.ssl_context,
            on_connect=self.admission.on_connect,
            guard=AnonymousGuard(AnonymousLimits.from_settings(s)),
        )
        with _listening("agent_listen", host, port, "agent gateway"):
            await self.gateway.start()
        self._closers.append(self.gateway.close)
        await self._start_images()
        await self._start_graphs(replica)

        # --- oob --- BMCs, pollers, task-channel commands (docs/oob.md)
        self.oob = await Oob.start(s, self.store, self.bus, self.events, replica, self.tasks)
        self._closers.append(self.oob.close)
        # --- end oob ---
        await self._start_api()

    # --- imaging (docs/imaging.md) ---
    async def _image_changed(self, what: str, record: ImageRecord) -> None:
        from hwfleet.bus.topology import EventKey

        body = {
            "id": record.id,
            "name": record.name,
            "size": record.size,
            "sha256": record.sha256,
            "blake3": record.blake3,  # None for an image registered before migration 0012
        }
        await self.events.emit(EventKey.image(what, record.id), body)

    async def _start_images(self) -> None:
        """The image registry, and its mTLS server for enrolled devices (not with --insecure)."""
        from hwfleet.images.registry import ImageRegistry

        s = self.settings
        self.images = ImageRegistry(
            self.store, s.image_dir or f"{s.data_dir}/images", s.image_max_disk_size
        )
        self.images.on_change = self._image_changed  # --- dashboard: image.* events ---
        self.image_server = None
        if s.image_listen == "off":
            return
        if s.insecure:
            log.warning("no image server with --insecure: it serves enrolled devices only")
            return
        import ssl

        from hwfleet.controller.links.admission import certificate_hosts
        from hwfleet.images.server import ImageServer
        from hwfleet.trust.tls import server_context

        gateway_host, gateway_port = parse_host_port(s.agent_listen, allow_any_port=True)
        if s.image_listen:
            host, port = parse_host_port(s.image_listen, allow_any_port=True)
        else:  # beside the gateway: 7800 → 7802 (0 stays 0: tests and ephemeral controllers)
            host, port = gateway_host, gateway_port + 2 if gateway_port else 0
        # The gateway's certificate (same hosts, so it is not re-issued): agents pin the CA.
        paths = self.admission.ca.issue_server_cert(certificate_hosts(gateway_host))
        context = server_context(self.admission.ca, paths)
        context.verify_mode = ssl.CERT_REQUIRED  # devices only: no anonymous downloads
        server = ImageServer(self.images, self.keys, context, host=host, port=port)
        with _listening("image_listen", host, port, "image server"):
            await server.start()
        self.image_server = server
        self._closers.append(server.close)

    # --- graphs (DESIGN §11) ---
    async def _start_graphs(self, replica: str) -> None:
        from hwfleet.controller.graph_agent import ControllerAgent
        from hwfleet.workflows.nodecreds import NodeCredentials
        from hwfleet.workflows.runner import RunnerSettings

        s = self.settings
        runner = RunnerSettings(
            owner=replica,
            lease=s.graph_lease,
            heartbeat=s.graph_heartbeat,
            max_in_flight=s.graph_max_in_flight,
            default_timeout=s.graph_task_timeout,
        )
        agent = ControllerAgent(self.store, self.devices, self.tasks)
        devices = self.devices

        async def held_elsewhere(node: str) -> bool:
            # A stream device is reachable only from the replica it is connected to.
            return not await devices.reachable(node) and node in await devices.online_now()

        self.graphs = GraphService(
            self.store,
            self.events,
            agent,
            runner,
            online=devices.online_now,
            held_elsewhere=held_elsewhere,
            credentials=NodeCredentials(self.operator_token),
        )
        await self.graphs.start(self.bus)
        self._closers.append(self.graphs.close)

        async def node_gone(delivery: Any) -> None:
            uuid = delivery.routing_key.rsplit(".", 1)[-1]
            await self.graphs.engine.node_lost(uuid, "the device went offline")

        sub = await self.bus.subscribe("events", "device.offline.*", node_gone)
        self._closers.append(sub.cancel)

    # --- end graphs ---

    def _apply_bus_policy(self) -> None:
        """hwinfo_queue's dead-lettering policy, in the background (rabbitmqctl takes seconds)."""
        if urlsplit(self.settings.bus).scheme not in ("amqp", "amqps"):
            return
        task = asyncio.create_task(
            apply_hwinfo_policy(self.settings.bus_credentials, self.settings.bus),
            name="hwinfo_queue policy",
        )

        async def cancel() -> None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        self._closers.append(cancel)

    async def _start_scans(self, replica: str, senders: SenderCheck) -> None:
        """The MES client, the outbox worker delivering its posts, and the scan service."""
        s = self.settings
        self.mes = MesClient.from_settings(s)
        self._closers.append(self.mes.aclose)
        if not self.mes.configured:
            log.warning(
                "no MES configured (--mes or HWFLEET_MES): a scan will mark every device failed "
                "because its MES record cannot be looked up"
            )
        self.outbox = OutboxWorker(self.store, self.mes, worker_id=f"outbox-{replica}")
        self.outbox.on_change = lambda: self.events.progress("outbox.delivery", {})  # dashboard
        await self.outbox.start()
        self._closers.append(self.outbox.close)
        self.scans = ScanService(
            self.store,
            self.bus,
            self.mes,
            s,
            outbox=self.outbox,
            events=self.events,
            senders=senders,
            quiet_default=lambda: float(self.config.get("scan.quiet_timeout")),
        )
        await self.scans.serve()
        self._closers.append(self.scans.close)

    async def _start_api(self) -> None:
        host, port = parse_host_port(self.settings.api_listen, allow_any_port=True)
        # --- dashboard (DESIGN §16): the web UI at / on the API's address ---
        dashboard = self.settings.dashboard
        services = ApiServices.build(self)
        if self.oob is not None:  # --- oob ---
            services.devices.bmc_methods = self.oob.bmc_methods
        app = create_app(
            services,
            self.operator_token,
            web.routers() if dashboard else None,
            max_body=self.settings.api_max_body,
        )
        if dashboard:
            web.provide_to(
                app,
                self.operator_token,
                self.store,
                session_idle=self.settings.dashboard_session_idle,
            )
        # --- end dashboard ---
        provide(app, self.images)  # --- imaging ---
        provide(app, self.graphs)  # graphs (DESIGN §11)
        # --- mdp: the latest diagnostics reports over REST ---
        from hwfleet.api.services.mdp import MdpService

        provide(app, MdpService(self.settings.data_dir, self.settings.mdp_report_listen))
        # --- end mdp ---
        provide(app, self.pruner.report)  # --- cli: history retention ---
        if self.oob is not None:  # --- oob ---
            provide(app, self.oob.service)
        # Bind first, so the address is known (port 0 works) before serving starts.
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with _listening("api_listen", host, port, "REST API"):
            try:
                sock.bind((host, port))
            except BaseException:
                sock.close()
                raise
        # Listen now: the API URL is announced before uvicorn's task runs, and a bound socket
        # that is not listening refuses connections; a listening one queues them until then.
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        sock.listen(config.backlog)
        bound = sock.getsockname()
        self.api_url = f"http://{host}:{bound[1]}"
        self._api_server = uvicorn.Server(config)
        self._api_task = asyncio.create_task(self._api_server.serve(sockets=[sock]))
        log.info("REST API on %s (OpenAPI at %s/docs)", self.api_url, self.api_url)

    async def close(self) -> None:
        if self._api_server is not None and self._api_task is not None:
            self._api_server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._api_task, 5)
        while self._closers:
            closer = self._closers.pop()
            try:
                await closer()
            except Exception:
                log.exception("error while closing %s", closer)


@contextlib.contextmanager
def _listening(setting: str, host: str, port: int, what: str) -> Iterator[None]:
    """A failed bind as one line naming the address and how to choose another."""
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            problem = "is already in use (another hwfleet server?)"
        elif exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
            problem = "is not an address of this machine"
        elif exc.errno == errno.EACCES:
            problem = "needs privileges to listen on (a port below 1024?)"
        else:
            problem = f"cannot be listened on ({exc.strerror or exc})"
        raise SettingsError(
            f"{what} address {host}:{port} {problem} — {fix_for(setting)}", setting=setting
        ) from None


def _apply_log_level(level: str) -> None:
    logging.getLogger("hwfleet").setLevel(level.upper())
