"""Outbound HTTP to addresses that clients choose (``input_image`` URLs, ``webhook_url``), safe from SSRF.

A URL is resolved once; every address it resolves to must be public (not loopback, private, link-local — which
includes cloud metadata at 169.254.169.254 —, multicast, reserved or unspecified) unless the operator's allowlist
names it. An IPv6 address that embeds an IPv4 one (IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible ``::a.b.c.d``,
NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``, Teredo ``2001::/32``) is judged by the IPv4 address it reaches, so
``[64:ff9b::7f00:1]`` is loopback; the local-use NAT64 prefix ``64:ff9b:1::/48`` is never public. The request then goes to the checked address itself, with the name kept for the Host header and TLS
(SNI and certificate check), so a DNS answer that changes between check and connect (rebinding) cannot redirect it.
Redirects are followed by hand, each hop checked the same way.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


NAT64 = ipaddress.ip_network("64:ff9b::/96")
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
TEREDO = ipaddress.ip_network("2001::/32")


def reached_addresses(address: IPAddress) -> list[IPAddress]:
    """The addresses a connection to ``address`` reaches: the IPv4 ones an IPv6 form embeds, else itself."""
    if address.version == 4:
        return [address]
    if address.ipv4_mapped:
        return [address.ipv4_mapped]
    if address in NAT64:
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    if address.sixtofour:
        return [address.sixtofour]
    if address in TEREDO:
        return list(address.teredo)  # the Teredo server and the (de-obfuscated) client
    if int(address) >> 32 == 0 and int(address) > 1:  # IPv4-compatible ::a.b.c.d (deprecated, still routed)
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    return [address]


def is_public(address: IPAddress) -> bool:
    """Reachable on the public internet by a unicast connection (Python's ``is_global`` lets multicast through)."""
    if address.version == 6 and address in NAT64_LOCAL:
        return False
    return address.is_global and not (
        address.is_multicast or address.is_reserved or address.is_unspecified or address.is_loopback
        or address.is_link_local or address.is_private
    )  # fmt: skip


class BlockedURLError(ValueError):
    """The URL may not be fetched; the message says why, for the client."""


class FetchError(ValueError):
    """The URL could not be fetched within the limits; the message says why, for the client."""


@dataclass(frozen=True)
class UrlPolicy:
    """``allowlist``: host names, addresses or CIDR ranges that may be reached even though they are not public."""

    allowlist: tuple[str, ...] = ()

    def _allowed(self, host: str, address: IPAddress) -> bool:
        for entry in self.allowlist:
            if entry.lower() == host.lower():
                return True
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
        return False

    def resolve(self, url: str) -> tuple[str, IPAddress]:
        """Check ``url`` and return (host, the address to connect to); raises BlockedURLError."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise BlockedURLError("only http and https URLs are allowed")
        if not parts.hostname:
            raise BlockedURLError("URL has no host")
        if parts.username or parts.password:
            raise BlockedURLError("URLs with credentials are not allowed")
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            raise BlockedURLError(f"cannot resolve host {host!r}") from None
        addresses = []
        for info in infos:
            address = ipaddress.ip_address(info[4][0].split("%")[0])
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                address = address.ipv4_mapped
            addresses.append(address)
        for address in addresses:
            for reached in reached_addresses(address):
                if not is_public(reached) and not self._allowed(host, reached) and not self._allowed(host, address):
                    raise BlockedURLError(f"host {host!r} resolves to a non-public address, which is not allowed")
        return host, addresses[0]


def pinned_request(
    client: httpx.Client, method: str, url: str, policy: UrlPolicy, **kwargs
) -> httpx.Response:
    """One request (no redirects) to the address ``url`` was checked to resolve to. The caller closes the response."""
    host, address = policy.resolve(url)
    parts = urlsplit(url)
    netloc = f"[{address}]" if address.version == 6 else str(address)
    if parts.port:
        netloc += f":{parts.port}"
    headers = dict(kwargs.pop("headers", None) or {})
    headers["Host"] = parts.netloc.rsplit("@", 1)[-1]
    request = client.build_request(
        method, urlunsplit(parts._replace(netloc=netloc)), headers=headers,
        extensions={"sni_hostname": host}, **kwargs,
    )  # fmt: skip
    return client.send(request, stream=True, follow_redirects=False)


def fetch(
    url: str,
    policy: UrlPolicy,
    *,
    max_bytes: int,
    timeout_s: float,
    max_redirects: int = 3,
    accept_types: tuple[str, ...] = ("image/", "application/octet-stream"),
) -> bytes:
    """GET ``url`` with SSRF checks on every hop, a total time limit, a size limit and a content-type check."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=timeout_s, headers={"User-Agent": "OpenKontext"}) as client:
        for _ in range(max_redirects + 1):
            try:
                response = pinned_request(client, "GET", url, policy)
            except httpx.HTTPError as exc:
                raise FetchError(f"could not fetch the URL ({type(exc).__name__})") from None
            try:
                if response.is_redirect:
                    url = urljoin(url, response.headers.get("location", ""))
                    continue
                if response.status_code != 200:
                    raise FetchError(f"fetching the URL gave HTTP {response.status_code}")
                content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if not content_type.startswith(accept_types):
                    raise FetchError(f"the URL's content-type is {content_type or 'missing'}, not an image")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise FetchError(f"the URL's content is larger than {max_bytes} bytes")
                chunks, size = [], 0
                try:
                    for chunk in response.iter_bytes():
                        size += len(chunk)
                        if time.monotonic() > deadline:
                            raise FetchError(f"fetching the URL took longer than {timeout_s} s")
                        if size > max_bytes:
                            raise FetchError(f"the URL's content is larger than {max_bytes} bytes")
                        chunks.append(chunk)
                except httpx.HTTPError as exc:
                    raise FetchError(f"could not fetch the URL ({type(exc).__name__})") from None
                return b"".join(chunks)
            finally:
                response.close()
        raise FetchError(f"the URL redirected more than {max_redirects} times")
