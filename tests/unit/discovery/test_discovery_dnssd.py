"""DNS-SD: TXT record building, and a real registration resolved over mDNS on loopback only."""

from __future__ import annotations

import pytest

from hwfleet.discovery.dnssd import SERVICE_TYPE, DnsSdAdvertiser, instance_name, txt_properties

from .conftest import make_meta


def test_txt_record_carries_identity_and_fingerprint_only() -> None:
    props = txt_properties(make_meta(), "SHA256:aa:bb")
    assert props == {
        "uuid": make_meta().uuid,
        "serial": "1001",
        "model_id": "x86-burnin",
        "version": "0.1.0",
        "fingerprint": "SHA256:aa:bb",
    }
    assert "fingerprint" not in txt_properties(make_meta(), None)
    with pytest.raises(ValueError, match="255-byte"):
        txt_properties(make_meta(model_id="m" * 300), None)


def test_instance_name_is_a_safe_dns_label() -> None:
    name = instance_name(make_meta(name="rack 7 / slot 3" + "x" * 100))
    assert len(name) <= 63 and " " not in name and "/" not in name
    assert name.endswith("-" + make_meta().uuid.split("-")[0])


async def test_registers_and_resolves_on_loopback_only() -> None:
    from zeroconf import IPVersion
    from zeroconf.asyncio import AsyncZeroconf

    meta = make_meta(ipaddr="127.0.0.1")
    advertiser = DnsSdAdvertiser(meta, port=7800, fingerprint="SHA256:aa", interfaces=["127.0.0.1"])
    await advertiser.start()
    browser = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    try:
        info = await browser.async_get_service_info(SERVICE_TYPE, advertiser.service_name, 5000)
        assert info is not None, "the service resolves over mDNS on 127.0.0.1"
        assert info.port == 7800
        assert info.properties[b"uuid"] == meta.uuid.encode()
        assert info.properties[b"fingerprint"] == b"SHA256:aa"
        assert info.parsed_addresses() == ["127.0.0.1"]
    finally:
        await browser.async_close()
        await advertiser.close()
