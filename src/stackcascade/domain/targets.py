"""Where webhooks may be sent: URL rules and the address policy that keeps them off internal networks.

A webhook URL is chosen by any member of an organization, and the server posts to it from inside
its own network. Without a policy that is a way to reach the cloud metadata service, the database
or an admin port (server-side request forgery). The adapter resolves the host and asks
:func:`refusal` about every address it got, and connects only to an address that passed.

Some addresses are never contacted (metadata services, link-local, multicast, reserved ...); the
rest of the internal space (loopback, private ranges, shared address space, other special-purpose
blocks) only when an operator lists a network that contains them in
``CASCADE_WEBHOOK_ALLOW_NETWORKS``, e.g. for a receiver on the same host or LAN.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from string import hexdigits
from typing import Final
from urllib.parse import urlsplit

from stackcascade.domain.errors import InvalidInput

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOW_SETTING: Final = "CASCADE_WEBHOOK_ALLOW_NETWORKS"
MAX_URL_LENGTH: Final = 2048
DEFAULT_PORTS: Final = {"http": 80, "https": 443}

METADATA_ADDRESSES: Final = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OCI, DigitalOcean, OpenStack ... instance metadata
        "169.254.170.2",  # AWS ECS task metadata and credentials
        "169.254.170.23",  # AWS EKS Pod Identity agent
        "100.100.100.200",  # Alibaba Cloud metadata
        "192.0.0.192",  # Oracle Cloud (classic) metadata
        "168.63.129.16",  # Azure WireServer: a public address, so only this list stops it
        "fd00:ec2::254",  # AWS instance metadata over IPv6
        "fd00:ec2::23",  # AWS EKS Pod Identity agent over IPv6
        "fd20:ce::254",  # GCP metadata over IPv6
        "fd00:42::42",  # Scaleway metadata over IPv6
    )
)

_THIS_NETWORK: Final = ipaddress.ip_network("0.0.0.0/8")
_BROADCAST: Final = ipaddress.ip_address("255.255.255.255")
_SHARED: Final = ipaddress.ip_network("100.64.0.0/10")
_PRIVATE: Final = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "fec0::/10")
)
# Not globally reachable per the IANA special-purpose registries, and not marked so by every Python's
# ipaddress module; everything else is left to ``is_global``.
_SPECIAL: Final = tuple(
    ipaddress.ip_network(n)
    for n in (
        "192.0.0.0/29",
        "192.0.0.8/31",
        "192.0.0.11/32",
        "192.0.0.12/30",
        "192.0.0.16/28",
        "192.0.0.32/27",
        "192.0.0.64/26",
        "192.0.0.128/25",
        "64:ff9b:1::/48",
        "2001::/23",
        "2001:db8::/32",
        "3fff::/20",
    )
)
_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL: Final = ipaddress.ip_network("64:ff9b:1::/48")


def _address(text: str) -> Address:
    return ipaddress.ip_address(text[1:-1] if text.startswith("[") and text.endswith("]") else text)


def _unscoped(ip: Address) -> Address:
    """``fe80::1%eth0`` without its zone, so that it compares equal to the listed addresses."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        return ipaddress.IPv6Address(int(ip))
    return ip


def host_is_ip(host: str) -> bool:
    """Whether ``host`` is an IP address literal (IPv6 with or without brackets) rather than a name."""
    try:
        _address(host)
    except ValueError:
        return False
    return True


def parse_allowed_networks(text: str | None) -> tuple[Network, ...]:
    """Parse ``CASCADE_WEBHOOK_ALLOW_NETWORKS``: comma-separated CIDRs; a bare address is a /32 or /128."""
    if text is None:
        return ()
    networks: list[Network] = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        try:
            network = ipaddress.ip_network(entry)
        except ValueError:
            try:
                loose = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise InvalidInput(
                    f"{ALLOW_SETTING}: {entry!r} is not a network; write CIDRs like 10.0.0.0/8 or fd00::/8, "
                    "separated by commas"
                ) from None
            raise InvalidInput(
                f"{ALLOW_SETTING}: {entry!r} has bits set after the prefix; did you mean {loose}?"
            ) from None
        if network not in networks:
            networks.append(network)
    return tuple(networks)


@dataclass(frozen=True, slots=True)
class Target:
    """A webhook URL that passed the URL rules; ``host`` is lower-case, without IPv6 brackets."""

    scheme: str
    host: str
    port: int
    url: str


def _looks_numeric_ipv4(host: str) -> bool:
    """Hosts like ``2130706433``, ``0x7f.1`` or ``127.1``: resolvers read them as IPv4 addresses."""
    labels = host.rstrip(".").split(".")
    return all(label.isdigit() or (label[:2] == "0x" and all(c in hexdigits for c in label[2:])) for label in labels)


def _check_host(host: str) -> str:
    if host_is_ip(host):
        if "%" in host:
            raise InvalidInput(f"webhook URL host {host!r}: an IPv6 zone (after '%') is not allowed")
        return host
    if _looks_numeric_ipv4(host):
        raise InvalidInput(f"webhook URL host {host!r} is not a valid IPv4 address: write it as four numbers, a.b.c.d")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidInput(f"webhook URL host {host!r} is not a valid domain name") from None
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if len(host) > 253 or not all(
        0 < len(label) <= 63 and "-" not in (label[0], label[-1]) and all(c.isalnum() or c in "-_" for c in label)
        for label in labels
    ):
        raise InvalidInput(f"webhook URL host {host!r} is not a valid domain name")
    return host


def parse_target_url(url: object) -> Target:
    """Check a webhook ``payloadUrl`` and split it; the address policy applies once the host is resolved."""
    if not isinstance(url, str):
        raise InvalidInput("the webhook URL must be a string, e.g. https://hooks.example.com/pulumi")
    if not url:
        raise InvalidInput("the webhook URL is empty: give one like https://hooks.example.com/pulumi")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidInput(f"the webhook URL is {len(url)} characters long; at most {MAX_URL_LENGTH} are allowed")
    bad = next((c for c in url if c.isspace() or ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise InvalidInput(f"the webhook URL contains {bad!r}: spaces and control characters must be percent-encoded")
    if "\\" in url:
        raise InvalidInput("the webhook URL contains a backslash: write '/' or percent-encode it as %5C")
    try:
        parts = urlsplit(url)
    except ValueError as e:
        raise InvalidInput(f"the webhook URL {url!r} cannot be parsed: {e}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        shown = f"{parts.scheme}:" if parts.scheme else "no scheme"
        raise InvalidInput(f"the webhook URL has {shown}: only http:// and https:// URLs can receive webhooks")
    if "@" in parts.netloc:
        raise InvalidInput(
            "the webhook URL contains a user name or password (user:pass@): put credentials in the webhook's secret"
        )
    host = parts.hostname
    if not host:
        raise InvalidInput(f"the webhook URL {url!r} has no host: give one like https://hooks.example.com/pulumi")
    try:
        port = parts.port
    except ValueError:
        raise InvalidInput(f"the webhook URL {url!r} has an invalid port: use a number from 1 to 65535") from None
    if port == 0:
        raise InvalidInput(f"the webhook URL {url!r} has port 0: use a number from 1 to 65535")
    return Target(scheme, _check_host(host), port or DEFAULT_PORTS[scheme], url)


def _embedded_ipv4(ip: Address) -> tuple[ipaddress.IPv4Address, bool] | None:
    """The IPv4 address an IPv6 address carries, and whether that IPv4 address alone decides.

    IPv4-mapped (``::ffff:a.b.c.d``) and well-known NAT64 (``64:ff9b::a.b.c.d``) addresses reach
    the IPv4 host and nothing else. 6to4 (``2002::/16``) and local-use NAT64 (``64:ff9b:1::/48``)
    carry one too, but the IPv6 address is judged as well.
    """
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, True
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), True
    if ip.sixtofour is not None:
        return ip.sixtofour, False
    if ip in _NAT64_LOCAL:  # RFC 6052 /48 layout: bits 48-63 and 72-87, skipping the "u" octet
        packed = ip.packed
        return ipaddress.IPv4Address(packed[6:8] + packed[9:11]), False
    return None


def _never(ip: Address) -> str | None:
    """The category of an address that is refused even inside an allowed network."""
    if ip.is_unspecified or (isinstance(ip, ipaddress.IPv4Address) and ip in _THIS_NETWORK):
        return "unspecified ('this network')"
    if ip in METADATA_ADDRESSES:
        return "cloud metadata service"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip == _BROADCAST:
        return "broadcast"
    if ip.is_reserved and not ip.is_loopback and ip not in _NAT64_LOCAL:  # ::/8 holds both
        return "reserved"
    return None


def _internal(ip: Address) -> str | None:
    """The category of an address that is refused unless inside an allowed network."""
    if ip.is_loopback:
        return "loopback"
    if any(ip in net for net in _PRIVATE):
        return "private"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED:
        return "shared address space (carrier-grade NAT)"
    if any(ip in net for net in _SPECIAL) or not ip.is_global:
        return "special-purpose (not globally reachable)"
    return None


def _in(allowed: tuple[Network, ...], *ips: Address) -> bool:
    return any(ip.version == net.version and ip in net for ip in ips for net in allowed)


def _reason(shown: str, category: str, allowable: bool) -> str:
    article = "an" if category[0] in "aeiou" else "a"
    if allowable:
        return (
            f"{shown} is {article} {category} address; to send webhooks there, add a network that contains it "
            f"to {ALLOW_SETTING}"
        )
    return f"{shown} is {article} {category} address; webhooks are never sent there"


def refusal(address: str, allowed: tuple[Network, ...]) -> str | None:
    """None when a webhook may connect to the IP ``address``, else why not, for the person who set the URL."""
    try:
        ip = _unscoped(_address(address))
    except ValueError:
        return f"{address!r} is not an IP address"
    embedded = _embedded_ipv4(ip)
    judged: list[Address] = [ip]
    if embedded is not None:
        inner, decides = embedded
        judged = [inner] if decides else [inner, ip]
    for one in judged:
        shown = address if one is ip else f"{address} (which carries the IPv4 address {one})"
        category = _never(one)
        if category is not None:
            return _reason(shown, category, allowable=False)
        category = _internal(one)
        if category is not None and not _in(allowed, one, ip):
            return _reason(shown, category, allowable=True)
    return None
