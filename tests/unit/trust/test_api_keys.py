"""The keys REST router: real service, real SQLite store, real HTTP semantics (ASGI)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from hwfleet.api import keys as keys_api
from hwfleet.api.deps import provide
from hwfleet.protocol.errors import MethodError
from hwfleet.trust import EnrollmentService, EnrollParams
from hwfleet.trust.tokens import token_hash

OPERATOR = "operator-token-for-tests"


@pytest.fixture
async def client(service: EnrollmentService) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    provide(app, service)
    app.state.operator_token = OPERATOR
    app.include_router(keys_api.router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://controller",
        headers={"Authorization": f"Bearer {OPERATOR}"},
    ) as http:
        yield http


async def enroll(service: EnrollmentService, csr: str, **secret: str) -> Any:
    return await service.enroll(
        EnrollParams(uuid=str(uuid.uuid4()), csr=csr, **secret), source_ip="10.0.0.1"
    )


async def test_operator_token_is_required(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/keys", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401
    response = await client.post("/api/v1/keys/tokens", headers={"Authorization": ""})
    assert response.status_code == 401


async def test_list_accept_reject_delete(
    client: httpx.AsyncClient,
    service: EnrollmentService,
    new_csr: Callable[..., str],
    password: str,
    recorder: Any,
) -> None:
    service.manual_approval = True
    pending = await enroll(service, new_csr())
    accepted = await enroll(service, new_csr(), password=password)
    listing = (await client.get("/api/v1/keys")).json()
    assert {row["id"]: row["state"] for row in listing} == {
        pending.key_id: "pending",
        accepted.key_id: "accepted",
    }
    assert all(row["fingerprint"].startswith("SHA256:") for row in listing)
    assert all(set(row) == set(keys_api.Key.model_fields) for row in listing)

    response = await client.post(f"/api/v1/keys/{pending.key_id}/accept")
    assert response.status_code == 200 and response.json()["state"] == "accepted"
    response = await client.post(f"/api/v1/keys/{accepted.key_id}/reject")
    assert response.json()["state"] == "rejected"
    assert len(recorder.revoked) == 1
    response = await client.delete(f"/api/v1/keys/{pending.key_id}")
    assert response.status_code == 200 and response.json()["id"] == pending.key_id
    assert len(recorder.revoked) == 2
    remaining = (await client.get("/api/v1/keys")).json()
    assert [row["id"] for row in remaining] == [accepted.key_id]


async def test_unknown_key_is_404_and_conflict_is_409(
    client: httpx.AsyncClient,
    service: EnrollmentService,
    new_csr: Callable[..., str],
    password: str,
) -> None:
    response = await client.post("/api/v1/keys/ffffffffffffffff/accept")
    assert response.status_code == 404 and "no key" in response.json()["detail"]
    response = await client.delete("/api/v1/keys/ffffffffffffffff")
    assert response.status_code == 404
    device = str(uuid.uuid4())
    await service.enroll(
        EnrollParams(uuid=device, csr=new_csr(), password=password), source_ip="10.0.0.1"
    )
    with pytest.raises(MethodError):
        await service.enroll(
            EnrollParams(uuid=device, csr=new_csr(), password=password), source_ip="10.0.0.1"
        )
    denied = next(r for r in (await client.get("/api/v1/keys")).json() if r["state"] == "denied")
    response = await client.post(f"/api/v1/keys/{denied['id']}/accept")
    assert response.status_code == 409
    assert "hwfleet keys delete" in response.json()["detail"]


async def test_token_creation_shows_the_token_once_and_stores_only_a_hash(
    client: httpx.AsyncClient, service: EnrollmentService, new_csr: Callable[..., str]
) -> None:
    before = dt.datetime.now(dt.UTC)
    response = await client.post("/api/v1/keys/tokens", json={"ttl": 120})
    assert response.status_code == 201
    body = response.json()
    expires = dt.datetime.fromisoformat(body["expires_at"])
    assert before + dt.timedelta(seconds=119) < expires < before + dt.timedelta(seconds=125)
    async with service.store.tx() as tx:
        # The stored row is keyed by the hash; consuming by the clear token finds nothing.
        assert not await tx.tokens.consume(body["token"], before)
    reply = await enroll(service, new_csr(), token=body["token"])
    assert reply.state == "accepted"
    assert token_hash(body["token"]) != body["token"]
    default = await client.post("/api/v1/keys/tokens")
    assert default.status_code == 201


@pytest.mark.parametrize("ttl", [0, -1, 10**9, "soon"])
async def test_token_ttl_is_validated(client: httpx.AsyncClient, ttl: Any) -> None:
    response = await client.post("/api/v1/keys/tokens", json={"ttl": ttl})
    assert response.status_code == 422
    assert "ttl" in response.text
