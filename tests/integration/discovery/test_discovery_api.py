"""GET /api/v1/discovery and POST /api/v1/discovery/scan over real HTTP (ASGI) and UDP."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from hwfleet.api.deps import provide
from hwfleet.api.discovery import router
from hwfleet.discovery import DiscoveryBrowser

TOKEN = "test-token"


async def test_api_lists_and_scans(fleet: Any, port: int) -> None:
    await fleet(3)
    async with DiscoveryBrowser(probe=[], group=None, port=port) as browser:
        app = FastAPI()
        app.include_router(router)
        app.state.operator_token = TOKEN
        provide(app, browser)
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            assert (await http.get("/api/v1/discovery")).status_code == 401
            assert (await http.get("/api/v1/discovery", headers=headers)).json() == []

            scan = await http.post(
                "/api/v1/discovery/scan",
                json={"timeout": 3, "probe": ["127.1.0.0/29"]},
                headers=headers,
            )
            assert scan.status_code == 200, scan.text
            assert [d["ipaddr"] for d in scan.json()] == ["127.1.0.1", "127.1.0.2", "127.1.0.3"]

            listed = (await http.get("/api/v1/discovery", headers=headers)).json()
            assert len(listed) == 3 and all(d["state"] == "online" for d in listed)
            assert all(d["signed"] and not d["spoofed"] for d in listed)
            offline = await http.get("/api/v1/discovery?state=offline", headers=headers)
            assert offline.json() == []

            bad = await http.post(
                "/api/v1/discovery/scan", json={"probe": ["10.0.0.0/8"]}, headers=headers
            )
            assert bad.status_code == 422 and "wider than /16" in bad.text
            too_long = await http.post(
                "/api/v1/discovery/scan", json={"timeout": 600}, headers=headers
            )
            assert too_long.status_code == 422

            stats = (await http.get("/api/v1/discovery/stats", headers=headers)).json()
            assert stats["accepted"] == 3
