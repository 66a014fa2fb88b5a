"""``hwfleet device direct``: reach a device's admin listener yourself, as a second controller.

Seed 004's direct access: the device is pinned by its key fingerprint (``hwfleet
keys list`` at its own controller, or ``hwfleet discover``), this client proves
its own key (``<data-dir>/pki/client.key``, made on first use, or ``--key``),
and the device password is sent only if the device does not trust that key yet
(``HWFLEET_DEVICE_PASSWORD``, else a hidden prompt with ``--ask-password``).
Once admitted by the password, the key alone is enough from then on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from hwfleet.cli.client import CliError
from hwfleet.cli.fleet import JsonOpt, parse_params
from hwfleet.cli.output import print_json

Opt = typer.Option
Arg = typer.Argument
PASSWORD_ENV = "HWFLEET_DEVICE_PASSWORD"  # noqa: S105 - the variable's name, not a secret
CLIENT_KEY = "client.key"


def register(device: typer.Typer) -> None:
    @device.command("direct")
    def direct(
        address: Annotated[str, Arg(help="the device's admin listener H:P (--admin-listen)")],
        method: Annotated[str, Arg(help="the agent method, e.g. status, device.trust.list")],
        fingerprint: Annotated[
            str, Opt("--fingerprint", help="the device key SHA256:… (hwfleet keys list)")
        ],
        param: Annotated[list[str] | None, Opt("--param", help="k=v (JSON values allowed)")] = None,
        key: Annotated[
            Path | None, Opt("--key", help="this client's private key (PEM); default in data dir")
        ] = None,
        data_dir: Annotated[
            str | None, Opt("--data-dir", help="where pki/client.key lives (~/.hwfleet)")
        ] = None,
        label: Annotated[str, Opt("--label", help="how the device lists this key")] = "",
        ask_password: Annotated[
            bool, Opt("--ask-password", help=f"prompt for the device password ({PASSWORD_ENV})")
        ] = False,
        as_json: JsonOpt = False,
    ) -> None:
        """Call METHOD on a device directly: by trusted key, or once by the device password."""
        from hwfleet.cli.common import run
        from hwfleet.settings import default_data_dir
        from hwfleet.types import parse_host_port

        try:
            host, port = parse_host_port(address)
        except ValueError as exc:
            raise CliError(f"address: {exc}") from None
        key_path = key or Path(data_dir or default_data_dir()) / "pki" / CLIENT_KEY
        password = os.environ.get(PASSWORD_ENV, "")
        if not password and ask_password:
            password = typer.prompt("Device password", hide_input=True, err=True)
        params = parse_params(param or [])
        reply = run(_call(host, port, key_path, fingerprint, password, label, method, params))
        if as_json:
            print_json(reply)
            return
        for field, value in reply.items():
            typer.echo(f"{field}: {value}")


async def _call(
    host: str,
    port: int,
    key_path: Path,
    fingerprint: str,
    password: str,
    label: str,
    method: str,
    params: dict[str, Any],
) -> dict[str, Any]:
    from hwfleet.protocol.errors import CallTimeoutError, RemoteError, SessionClosedError
    from hwfleet.trust import fingerprints
    from hwfleet.trust.device_client import connect_device, load_or_create_client_key
    from hwfleet.trust.tls import FirstContactError

    try:
        client_key = load_or_create_client_key(key_path)
        connection = await connect_device(
            host,
            port,
            key=client_key,
            device_fingerprint=fingerprint,
            password=password,
            label=label,
        )
    except fingerprints.BadFingerprintError as exc:
        raise CliError(f"--fingerprint: {exc}") from None
    except FirstContactError as exc:
        raise CliError(str(exc)) from None
    except RemoteError as exc:
        hint = f" (set {PASSWORD_ENV} or --ask-password)" if "trust list" in exc.msg else ""
        raise CliError(f"the device refused the login: {exc.msg}{hint}") from None
    except (OSError, TimeoutError, ValueError) as exc:
        raise CliError(f"cannot log in to {host}:{port}: {exc}") from None
    try:
        return await connection.call(method, params)
    except RemoteError as exc:
        raise CliError(f"{method}: {exc.msg} ({exc.code})") from None
    except (CallTimeoutError, SessionClosedError) as exc:
        raise CliError(f"{method}: {exc}") from None
    finally:
        await connection.close()
