"""Client-chosen URLs (input_image, webhook_url) never reach multicast or an IPv4 address hidden in an IPv6 form."""

from __future__ import annotations

import pytest

from conftest import b64, image_bytes
from openkontext.netguard import BlockedURLError, UrlPolicy

ROUTE = "/v1/flux-bagel-alpha"

REFUSED = [
    "http://224.0.0.1/",  # multicast, all hosts
    "http://239.255.255.250:1900/",  # multicast, SSDP
    "http://[ff02::1]/",  # IPv6 multicast, all nodes
    "http://[::127.0.0.1]/",  # IPv4-compatible loopback
    "http://[::10.0.0.1]/",  # IPv4-compatible private
    "http://[::ffff:169.254.169.254]/",  # IPv4-mapped cloud metadata
    "http://[64:ff9b::7f00:1]/",  # NAT64 of 127.0.0.1
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
    "http://[64:ff9b:1::808:808]/",  # local-use NAT64 prefix
    "http://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
    "http://[2002:c0a8:101::1]/",  # 6to4 of 192.168.1.1
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",  # Teredo, client 192.0.2.45
]
ALLOWED = ["http://8.8.8.8/", "http://[64:ff9b::808:808]/", "http://[2002:808:808::1]/", "http://[::ffff:8.8.8.8]/",
           "http://[2606:4700:4700::1111]/"]  # fmt: skip


@pytest.mark.parametrize("url", REFUSED)
def test_the_policy_judges_an_embedded_ipv4_address_by_what_it_reaches(url):
    with pytest.raises(BlockedURLError, match="non-public"):
        UrlPolicy().resolve(url)


@pytest.mark.parametrize("url", ALLOWED)
def test_public_addresses_in_the_same_forms_stay_allowed(url):
    UrlPolicy().resolve(url)


def test_an_allowlisted_range_still_lets_its_embedded_form_through():
    UrlPolicy(("127.0.0.0/8",)).resolve("http://[64:ff9b::7f00:1]/")


def test_refused_addresses_are_422_at_submit_for_images_and_webhooks_and_store_nothing(start_server):
    server = start_server(workers=0)
    image = b64(image_bytes((32, 32)))
    with server.client() as client:
        for url in REFUSED:
            as_image = client.post(ROUTE, json={"prompt": "x", "input_image": url})
            assert as_image.status_code == 422, (url, as_image.text)
            assert as_image.json()["detail"][0]["loc"] == ["body", "input_image"]
            as_webhook = client.post(ROUTE, json={"prompt": "x", "input_image": image, "webhook_url": url})
            assert as_webhook.status_code == 422, (url, as_webhook.text)
            assert as_webhook.json()["detail"][0]["loc"] == ["body", "webhook_url"]
        assert client.get("/v1/tasks").json()["tasks"] == []
