"""The HTTP side of webhooks: target rules after DNS resolution, then one POST to the checked address.

The request goes to the address that was checked (the URL's host is replaced by it, with the
original ``Host`` header and TLS server name), so a DNS answer that changes between the check and
the connection cannot redirect a delivery to a refused address. Redirects are never followed.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from ipaddress import IPv4Network, IPv6Network

import httpx2

from stackcascade.domain.errors import InvalidInput
from stackcascade.domain.targets import Target, host_is_ip, parse_target_url, refusal
from stackcascade.services.webhook_client import AttemptResult, OutgoingRequest

Resolver = Callable[[str, int], Awaitable[list[str]]]
MAX_BODY = 16 * 1024


async def resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class HttpSender:
    """``WebhookClient`` over httpx2; ``transport`` and ``resolver`` are injectable for tests."""

    def __init__(
        self,
        allowed_networks: Sequence[IPv4Network | IPv6Network] = (),
        *,
        timeout: float = 10.0,
        transport: httpx2.AsyncBaseTransport | None = None,
        resolver: Resolver = resolve,
    ) -> None:
        self._allowed = tuple(allowed_networks)
        self._resolve = resolver
        self.timeout = timeout
        self._client = httpx2.AsyncClient(
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,  # a proxy from the environment would bypass the address checks
            transport=transport,
            limits=httpx2.Limits(max_connections=200, max_keepalive_connections=50),
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def _addresses(self, target: Target) -> list[str]:
        """Every address the host stands for, refused as a whole when any one of them is refused."""
        addresses = [target.host] if host_is_ip(target.host) else await self._resolve(target.host, target.port)
        if not addresses:
            raise OSError(f"{target.host} has no addresses")
        for address in addresses:
            reason = refusal(address, self._allowed)
            if reason is not None:
                raise InvalidInput(f"webhook target {target.host} is refused: {reason}")
        return addresses

    async def check_target(self, url: str) -> None:
        target = parse_target_url(url)
        try:
            await self._addresses(target)
        except OSError:
            return  # not resolvable now; checked again (and refused if need be) at delivery time

    async def send(self, request: OutgoingRequest) -> AttemptResult:
        sent_at = time.time()
        started = time.perf_counter()

        def failed(error: str) -> AttemptResult:
            return AttemptResult(sent_at=sent_at, duration_ms=_ms_since(started), response_code=0, error=error)

        try:
            target = parse_target_url(request.url)
            address = (await self._addresses(target))[0]
        except InvalidInput as exc:
            return failed(exc.message)
        except OSError as exc:
            return failed(f"could not resolve the webhook host: {exc}")
        url, headers, extensions = _pinned(request, target, address)
        try:
            async with self._client.stream(
                "POST", url, content=request.body, headers=headers, extensions=extensions
            ) as response:
                body = await _read_limited(response)
                return AttemptResult(
                    sent_at=sent_at,
                    duration_ms=_ms_since(started),
                    response_code=response.status_code,
                    response_headers=dict(response.headers.items()),
                    response_body=body,
                )
        except httpx2.TimeoutException:
            return failed(f"no response within {self.timeout:g} s")
        except httpx2.HTTPError as exc:
            return failed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _pinned(request: OutgoingRequest, target: Target, address: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """The request aimed at ``address``, still naming the original host for HTTP and TLS."""
    host = target.host.strip("[]")
    url = str(httpx2.URL(request.url).copy_with(host=address))
    default_port = 443 if target.scheme == "https" else 80
    named = f"[{host}]" if ":" in host else host
    headers = {**request.headers, "Host": named if target.port == default_port else f"{named}:{target.port}"}
    extensions = {"sni_hostname": host} if target.scheme == "https" and not host_is_ip(host) else {}
    return url, headers, extensions


async def _read_limited(response: httpx2.Response) -> str:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= MAX_BODY:
            break
    return b"".join(chunks)[:MAX_BODY].decode("utf-8", errors="replace")
