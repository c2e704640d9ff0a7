"""Webhook URL rules and the address policy against server-side request forgery."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stackcascade.domain.errors import InvalidInput
from stackcascade.domain.targets import (
    ALLOW_SETTING,
    METADATA_ADDRESSES,
    Target,
    host_is_ip,
    parse_allowed_networks,
    parse_target_url,
    refusal,
)

NOTHING: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
EVERYTHING = parse_allowed_networks("0.0.0.0/0, ::/0")

# parse_allowed_networks


def test_no_setting_allows_nothing() -> None:
    assert parse_allowed_networks(None) == ()
    assert parse_allowed_networks("") == ()
    assert parse_allowed_networks(" , ") == ()


def test_networks_are_comma_separated_with_whitespace_tolerated() -> None:
    assert parse_allowed_networks(" 10.0.0.0/8 ,fd00::/8,\t192.168.1.0/24 ") == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("fd00::/8"),
        ipaddress.ip_network("192.168.1.0/24"),
    )


def test_a_single_address_is_a_network_of_one() -> None:
    assert parse_allowed_networks("127.0.0.1,::1") == (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("::1/128"),
    )


def test_repeated_networks_are_kept_once() -> None:
    assert parse_allowed_networks("10.0.0.0/8,10.0.0.0/8") == (ipaddress.ip_network("10.0.0.0/8"),)


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "intranet", "10.0.0", "*", "::1/129", "10.0.0.0/8/8"])
def test_a_bad_entry_is_named(entry: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_allowed_networks(f"192.168.0.0/16, {entry}")
    assert repr(entry) in caught.value.message
    assert ALLOW_SETTING in caught.value.message


def test_host_bits_after_the_prefix_get_a_suggestion() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_allowed_networks("10.1.2.3/8")
    assert "did you mean 10.0.0.0/8?" in caught.value.message


# parse_target_url


@pytest.mark.parametrize(
    ("url", "target"),
    [
        (
            "https://hooks.example.com/pulumi",
            Target("https", "hooks.example.com", 443, "https://hooks.example.com/pulumi"),
        ),
        ("http://hooks.example.com", Target("http", "hooks.example.com", 80, "http://hooks.example.com")),
        ("http://example.com:8080/x?y=1#z", Target("http", "example.com", 8080, "http://example.com:8080/x?y=1#z")),
        ("HTTPS://Hooks.EXAMPLE.com/A", Target("https", "hooks.example.com", 443, "HTTPS://Hooks.EXAMPLE.com/A")),
        ("http://[::1]:9000/h", Target("http", "::1", 9000, "http://[::1]:9000/h")),
        ("https://[2001:DB8::1]/", Target("https", "2001:db8::1", 443, "https://[2001:DB8::1]/")),
        ("http://127.0.0.1/", Target("http", "127.0.0.1", 80, "http://127.0.0.1/")),
        ("http://example.com:/", Target("http", "example.com", 80, "http://example.com:/")),
        ("http://example.com./", Target("http", "example.com.", 80, "http://example.com./")),
        ("http://my_host.internal/", Target("http", "my_host.internal", 80, "http://my_host.internal/")),
    ],
)
def test_good_urls_are_split_with_the_port_defaulted_and_the_host_lower_cased(url: str, target: Target) -> None:
    assert parse_target_url(url) == target


def test_an_international_host_is_turned_into_its_ascii_form() -> None:
    assert parse_target_url("https://bücher.example/h").host == "xn--bcher-kva.example"


@pytest.mark.parametrize("value", [None, 42, b"https://example.com", ["https://example.com"]])
def test_a_url_that_is_not_a_string_is_refused(value: object) -> None:
    with pytest.raises(InvalidInput, match="must be a string"):
        parse_target_url(value)


def test_an_empty_url_is_refused() -> None:
    with pytest.raises(InvalidInput, match="empty"):
        parse_target_url("")


def test_a_url_longer_than_2048_characters_is_refused() -> None:
    url = "https://example.com/" + "a" * 2029
    assert len(url) == 2049
    with pytest.raises(InvalidInput, match="at most 2048"):
        parse_target_url(url)
    assert parse_target_url(url[:-1]).host == "example.com"


@pytest.mark.parametrize(
    "url", ["ftp://example.com/", "file:///etc/passwd", "gopher://example.com/", "javascript:alert(1)", "example.com/x"]
)
def test_only_http_and_https_are_allowed(url: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_target_url(url)
    assert "only http:// and https://" in caught.value.message


@pytest.mark.parametrize("url", ["http:///path", "https://", "http://:80/", "http://?x", "http://::1/"])
def test_a_host_is_required(url: str) -> None:
    with pytest.raises(InvalidInput, match="no host"):
        parse_target_url(url)


@pytest.mark.parametrize(
    "url",
    [
        " https://example.com",
        "https://example.com ",
        "https://exa mple.com/",
        "https://example.com/a b",
        "https://example.com/\tx",
        "https://example.com/\nx",
        "https://example.com/\rx",
        "https://example.com/\x00",
        "https://example.com/\x7f",
        "https://example.com/\u00a0",
    ],
)
def test_whitespace_and_control_characters_are_refused(url: str) -> None:
    with pytest.raises(InvalidInput, match="spaces and control characters"):
        parse_target_url(url)


@pytest.mark.parametrize("url", ["https://user:pass@example.com/", "https://token@example.com/", "http://a@b@c/"])
def test_credentials_in_the_url_are_refused_pointing_at_the_secret(url: str) -> None:
    with pytest.raises(InvalidInput, match="webhook's secret"):
        parse_target_url(url)


def test_a_userinfo_that_disguises_the_real_host_is_refused() -> None:
    with pytest.raises(InvalidInput, match="user:pass@"):
        parse_target_url("http://127.0.0.1:80@evil.example/")


def test_a_backslash_is_refused_since_parsers_disagree_about_it() -> None:
    with pytest.raises(InvalidInput, match="backslash"):
        parse_target_url("https://good.example\\@evil.example/")


@pytest.mark.parametrize("url", ["http://example.com:0/", "http://example.com:65536/", "http://example.com:http/"])
def test_a_port_outside_1_to_65535_is_refused(url: str) -> None:
    with pytest.raises(InvalidInput, match="1 to 65535"):
        parse_target_url(url)


@pytest.mark.parametrize("url", ["http://[::1/", "http://[example.com]/", "http://[1.2.3.4]/"])
def test_broken_brackets_are_refused(url: str) -> None:
    with pytest.raises(InvalidInput, match="cannot be parsed"):
        parse_target_url(url)


def test_an_ipv6_zone_is_refused() -> None:
    with pytest.raises(InvalidInput, match="zone"):
        parse_target_url("http://[fe80::1%25eth0]/")


@pytest.mark.parametrize(
    "host", ["2130706433", "0x7f000001", "0x7f.1", "127.1", "127.0.1", "017700000001", "127.000.000.001", "0xDB"]
)
def test_numbers_that_resolvers_read_as_ipv4_addresses_are_refused(host: str) -> None:
    with pytest.raises(InvalidInput, match="four numbers"):
        parse_target_url(f"http://{host}/")


@pytest.mark.parametrize(
    "host", ["a..b", "-", "-a.com", "a-.com", "a" * 64 + ".com", "exa%mple.com", "a!b.com", ("a" * 60 + ".") * 5]
)
def test_hosts_that_are_not_domain_names_are_refused(host: str) -> None:
    with pytest.raises(InvalidInput, match="not a valid domain name"):
        parse_target_url(f"http://{host}/")


def test_numeric_labels_inside_a_real_name_are_fine() -> None:
    assert parse_target_url("http://1.2.3.example.com/").host == "1.2.3.example.com"


# host_is_ip


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("[2001:db8::1]", True),
        ("example.com", False),
        ("[example.com]", False),
        ("127.1", False),
        ("", False),
    ],
)
def test_host_is_ip_tells_literals_from_names(host: str, expected: bool) -> None:
    assert host_is_ip(host) is expected


# refusal: always refused


@pytest.mark.parametrize("address", sorted(str(a) for a in METADATA_ADDRESSES))
def test_cloud_metadata_addresses_are_refused_even_when_allowed(address: str) -> None:
    reason = refusal(address, EVERYTHING)
    assert reason is not None
    assert address in reason
    assert "cloud metadata" in reason
    assert ALLOW_SETTING not in reason


def test_the_well_known_metadata_addresses_are_listed() -> None:
    for address in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200", "192.0.0.192"):
        assert ipaddress.ip_address(address) in METADATA_ADDRESSES


@pytest.mark.parametrize(
    ("address", "category"),
    [
        ("169.254.0.1", "link-local"),
        ("169.254.255.255", "link-local"),
        ("fe80::1", "link-local"),
        ("febf::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("ff05::2", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("240.0.0.1", "reserved"),
        ("250.1.2.3", "reserved"),
        ("100::1", "reserved"),
        ("4000::1", "reserved"),
        ("::7f00:1", "reserved"),
        ("::ffff:0:7f00:1", "reserved"),
        ("5f00::1", "reserved"),
    ],
)
def test_never_contacted_addresses_are_refused_whatever_is_allowed(address: str, category: str) -> None:
    reason = refusal(address, EVERYTHING)
    assert reason is not None
    assert reason.startswith(address)
    assert category in reason
    assert "never" in reason
    assert ALLOW_SETTING not in reason


# refusal: refused unless allowed


@pytest.mark.parametrize(
    ("address", "category", "network"),
    [
        ("127.0.0.1", "loopback", "127.0.0.0/8"),
        ("127.255.0.9", "loopback", "127.0.0.0/8"),
        ("::1", "loopback", "::1/128"),
        ("10.1.2.3", "private", "10.0.0.0/8"),
        ("172.16.0.1", "private", "172.16.0.0/12"),
        ("172.31.255.254", "private", "172.16.0.0/12"),
        ("192.168.1.10", "private", "192.168.0.0/16"),
        ("fd12:3456::1", "private", "fc00::/7"),
        ("fc00::1", "private", "fc00::/7"),
        ("fec0::1", "private", "fec0::/10"),
        ("100.64.0.1", "shared address space", "100.64.0.0/10"),
        ("100.127.255.254", "shared address space", "100.64.0.0/10"),
        ("192.0.2.1", "special-purpose", "192.0.2.0/24"),
        ("198.51.100.7", "special-purpose", "198.51.100.0/24"),
        ("203.0.113.7", "special-purpose", "203.0.113.0/24"),
        ("198.18.0.1", "special-purpose", "198.18.0.0/15"),
        ("192.0.0.1", "special-purpose", "192.0.0.0/24"),
        ("2001:db8::1", "special-purpose", "2001:db8::/32"),
        ("3fff::1", "special-purpose", "3fff::/20"),
        ("2001::1", "special-purpose", "2001::/32"),
    ],
)
def test_internal_addresses_are_refused_unless_an_allowed_network_holds_them(
    address: str, category: str, network: str
) -> None:
    reason = refusal(address, NOTHING)
    assert reason is not None
    assert reason.startswith(address)
    assert category in reason
    assert ALLOW_SETTING in reason
    assert refusal(address, parse_allowed_networks(network)) is None
    assert refusal(address, parse_allowed_networks(address)) is None


def test_an_allowed_network_elsewhere_does_not_help() -> None:
    assert refusal("10.1.2.3", parse_allowed_networks("192.168.0.0/16,fd00::/8")) is not None


def test_an_ipv6_network_never_allows_an_ipv4_address() -> None:
    assert refusal("127.0.0.1", parse_allowed_networks("::/0")) is not None


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "2001:4860::8888"])
def test_public_addresses_may_be_contacted(address: str) -> None:
    assert refusal(address, NOTHING) is None


def test_the_azure_wireserver_is_refused_though_it_is_public() -> None:
    reason = refusal("168.63.129.16", EVERYTHING)
    assert reason is not None
    assert "cloud metadata" in reason


def test_something_that_is_not_an_address_is_refused_rather_than_crashing() -> None:
    assert refusal("example.com", EVERYTHING) == "'example.com' is not an IP address"


def test_bracketed_and_zoned_addresses_are_judged_as_the_address() -> None:
    assert refusal("[2606:4700:4700::1111]", NOTHING) is None
    assert refusal("[::1]", NOTHING) is not None
    reason = refusal("fd00:ec2::254%eth0", EVERYTHING)
    assert reason is not None
    assert "cloud metadata" in reason


# refusal: IPv4 inside IPv6


@pytest.mark.parametrize(
    ("address", "category"),
    [
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:7f00:1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("64:ff9b::169.254.169.254", "cloud metadata"),
        ("64:ff9b::a00:1", "private"),
        ("64:ff9b::7f00:1", "loopback"),
        ("2002:7f00:1::1", "loopback"),
        ("2002:a9fe:a9fe::1", "cloud metadata"),
        ("2002:c0a8:101::", "private"),
        ("64:ff9b:1:7f00:0001::", "loopback"),
    ],
)
def test_an_ipv6_address_carrying_an_ipv4_one_is_judged_by_it(address: str, category: str) -> None:
    reason = refusal(address, NOTHING)
    assert reason is not None
    assert reason.startswith(address)
    assert "carries the IPv4 address" in reason
    assert category in reason


def test_a_mapped_address_is_allowed_by_an_ipv4_network() -> None:
    assert refusal("::ffff:10.0.0.1", parse_allowed_networks("10.0.0.0/8")) is None


def test_a_mapped_metadata_address_stays_refused_when_everything_is_allowed() -> None:
    assert refusal("::ffff:169.254.169.254", EVERYTHING) is not None


@pytest.mark.parametrize("address", ["::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"])
def test_ipv6_forms_of_public_ipv4_addresses_may_be_contacted(address: str) -> None:
    assert refusal(address, NOTHING) is None


def test_local_use_nat64_is_internal_even_for_a_public_ipv4_address() -> None:
    reason = refusal("64:ff9b:1:808:8:800::", NOTHING)
    assert reason is not None
    assert "special-purpose" in reason
    assert refusal("64:ff9b:1:808:8:800::", parse_allowed_networks("64:ff9b:1::/48")) is None


@given(st.ip_addresses(v=4))
def test_an_ipv4_address_and_its_mapped_form_get_the_same_answer(ip: ipaddress.IPv4Address) -> None:
    mapped = f"::ffff:{ip}"
    assert (refusal(str(ip), NOTHING) is None) is (refusal(mapped, NOTHING) is None)


@given(st.ip_addresses())
def test_refusal_never_crashes_and_always_names_the_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    reason = refusal(str(ip), NOTHING)
    assert reason is None or reason.startswith(str(ip))


@given(st.ip_addresses())
def test_allowing_everything_still_refuses_what_is_never_contacted(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    reason = refusal(str(ip), EVERYTHING)
    if reason is not None:
        assert "never" in reason
        assert refusal(str(ip), NOTHING) is not None
