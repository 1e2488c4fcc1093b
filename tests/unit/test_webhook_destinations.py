"""Where webhooks may go: https to public addresses by default, in every spelling of an
address. Pure: the resolver is injected, and a connection attempt fails the test."""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import threading
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transflow import (
    ConfigError,
    ProgressQueue,
    TemplateRegistry,
    WebhookDestinationError,
    WebhookSender,
)
from transflow.processing.processor import JobProcessor
from transflow.processing.webhook_destinations import address_refusal, literal_address

PUBLIC = "93.184.216.34"


def resolving_to(*addresses: str) -> tuple[list[tuple[str, int]], WebhookSender]:
    calls: list[tuple[str, int]] = []

    def resolver(host: str, port: int) -> Sequence[str]:
        calls.append((host, port))
        return addresses

    return calls, WebhookSender(resolver=resolver)


def nowhere(host: str, port: int) -> Sequence[str]:
    raise AssertionError(f"{host}:{port} should not have been resolved")


@pytest.mark.parametrize(
    "host",
    [
        "169.254.169.254",
        "2852039166",  # decimal
        "0xa9fea9fe",  # hex
        "0251.0376.0251.0376",  # octal
        "0xa9.0xfe.0xa9.0xfe",
        "169.254.43518",  # short forms
        "169.16689662",
        "[::ffff:169.254.169.254]",  # IPv4-mapped IPv6
        "[::ffff:a9fe:a9fe]",
        "[0:0:0:0:0:ffff:a9fe:a9fe]",
        "[64:ff9b::a9fe:a9fe]",  # NAT64
        "[2002:a9fe:a9fe::1]",  # 6to4
        "[::169.254.169.254]",  # IPv4-compatible
        "[fd00:ec2::254]",  # the IPv6 metadata address
        "169.254.170.2",  # ECS credentials
        "[::1]",
        "127.0.0.1",
        "127.1",
        "0x7f000001",
        "2130706433",
        "127.255.255.254",
        "10.0.0.1",
        "10.255.255.255",
        "172.16.0.1",
        "172.31.255.254",
        "192.168.0.1",
        "100.64.0.1",  # carrier-grade NAT
        "100.127.255.254",
        "0.0.0.0",
        "0",
        "[::]",
        "[fc00::1]",
        "[fd12:3456::1]",
        "[fe80::1]",
        "[fec0::1]",  # site-local
        "169.254.1.1",
        "224.0.0.1",  # multicast
        "[ff02::1]",
        "240.0.0.1",  # reserved
        "255.255.255.255",
        "192.0.2.10",  # documentation
        "[2001:db8::1]",
        "localhost",
        "LOCALHOST",
        "localhost.",
        "hooks.localhost",
    ],
)
def test_refused_destinations_are_refused_before_any_lookup(host: str) -> None:
    url = f"https://{host}/hook"
    sender = WebhookSender(resolver=nowhere)
    with pytest.raises(WebhookDestinationError) as refused:
        sender.check_url(url)
    message = str(refused.value)
    assert url in message  # names the URL, the reason and the option that would allow it
    assert refused.value.reason in message
    assert "allowed_" in message or "no option allows it" in message
    with pytest.raises(WebhookDestinationError):
        sender.resolve(url)
    # deliver() never raises: a refused result, nothing sent, not retried.
    result = sender.deliver(url, b"{}", "secret")
    assert (result.delivered, result.refused, result.attempts) == (False, True, 0)


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("169.254.169.254", "cloud metadata"),
        ("2852039166", "cloud metadata"),
        ("[::ffff:169.254.169.254]", "cloud metadata"),
        ("[fd00:ec2::254]", "cloud metadata"),
        ("127.0.0.1", "loopback"),
        ("[::1]", "loopback"),
        ("10.1.2.3", "private"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("0.0.0.0", "unspecified"),
        ("[fe80::1]", "link-local"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("localhost", "names this machine"),
    ],
)
def test_the_refusal_says_why(host: str, reason: str) -> None:
    with pytest.raises(WebhookDestinationError, match=reason):
        WebhookSender().check_url(f"https://{host}/")


@pytest.mark.parametrize(
    "resolved",
    [
        ["169.254.169.254"],
        ["::ffff:169.254.169.254"],
        ["fd00:ec2::254"],
        ["127.0.0.1"],
        ["::1"],
        ["10.0.0.7"],
        ["172.20.1.1"],
        ["192.168.10.10"],
        ["100.100.100.100"],
        ["0.0.0.0"],
        ["fc00::5"],
        ["fe80::1%1"],
        [PUBLIC, "10.0.0.1"],  # a rebinding name: one refused address refuses them all
        ["2606:4700::1", "::1"],
    ],
)
def test_a_host_name_is_judged_by_every_address_it_resolves_to(resolved: list[str]) -> None:
    calls, sender = resolving_to(*resolved)
    url = "https://hooks.example.com:8443/x"
    sender.check_url(url)  # the name alone tells nothing
    with pytest.raises(
        WebhookDestinationError, match=r"hooks\.example\.com resolves to"
    ) as refused:
        sender.resolve(url)
    metadata = refused.value.reason.endswith("hands out credentials")
    hint = "no option allows it" if metadata else "allowed_hosts=['hooks.example.com']"
    assert hint in str(refused.value)
    result = sender.deliver(url, b"{}", "secret")  # refused before any connection
    assert (result.delivered, result.refused, result.attempts) == (False, True, 1)
    assert calls == [("hooks.example.com", 8443)] * 2  # resolved once per delivery


def test_public_destinations_pass() -> None:
    _, sender = resolving_to(PUBLIC, "2606:4700::1")
    assert [str(a) for a in sender.resolve("https://hooks.example.com/x")] == [
        PUBLIC,
        "2606:4700::1",
    ]
    sender.check_url(f"https://{PUBLIC}/x")
    sender.check_url("https://[2606:4700::1]/x")


def test_cleartext_http_needs_allow_http() -> None:
    with pytest.raises(WebhookDestinationError, match=r"cleartext http.*allow_http=True"):
        WebhookSender().check_url(f"http://{PUBLIC}/x")
    WebhookSender(allow_http=True).check_url(f"http://{PUBLIC}/x")
    # allow_http lifts only the scheme refusal.
    with pytest.raises(WebhookDestinationError, match="loopback"):
        WebhookSender(allow_http=True).check_url("http://127.0.0.1/x")


def test_the_allowlists_lift_the_address_refusal_for_what_they_name() -> None:
    internal = WebhookSender(allowed_networks=["10.1.0.0/16", "fd12::/16"])
    internal.check_url("https://10.1.2.3/x")
    internal.check_url("https://[fd12::1]/x")
    with pytest.raises(WebhookDestinationError, match="private"):
        internal.check_url("https://10.2.0.1/x")

    def resolver(host: str, port: int) -> Sequence[str]:
        return ["10.9.9.9"]

    named = WebhookSender(allowed_hosts=["Hooks.Internal."], resolver=resolver)
    assert [str(a) for a in named.resolve("https://hooks.internal/x")] == ["10.9.9.9"]
    with pytest.raises(WebhookDestinationError, match="private"):
        named.resolve("https://other.internal/x")
    WebhookSender(allowed_hosts=["localhost"]).check_url("https://localhost/x")


def test_metadata_addresses_stay_refused_whatever_the_options() -> None:
    def resolver(host: str, port: int) -> Sequence[str]:
        return ["169.254.169.254"]

    lenient = WebhookSender(
        allow_http=True,
        allowed_networks=["169.254.0.0/16", "0.0.0.0/0", "::/0"],
        allowed_hosts=["imds.internal", "169.254.169.254"],
        resolver=resolver,
    )
    for url in (
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://[fd00:ec2::254]/",
    ):
        with pytest.raises(WebhookDestinationError, match="no option allows it"):
            lenient.check_url(url)
    with pytest.raises(WebhookDestinationError, match="cloud metadata"):
        lenient.resolve("http://imds.internal/")


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "https:///nohost", "https://example.com:notaport/x", "x"]
)
def test_urls_that_are_not_absolute_https_are_refused(url: str) -> None:
    with pytest.raises(WebhookDestinationError, match="refused"):
        WebhookSender().check_url(url)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"allowed_networks": "10.0.0.0/8"}, "allowed_networks must be a list"),
        ({"allowed_networks": ["10.0.0.1/8"]}, "allowed_networks must hold networks"),
        ({"allowed_networks": [42.5]}, "allowed_networks must hold networks"),
        ({"allowed_hosts": "hooks.internal"}, "allowed_hosts must be a list"),
        ({"allowed_hosts": [""]}, "allowed_hosts must be a list"),
        ({"allow_http": "yes"}, "allow_http must be True or False"),
        ({"resolver": "dns"}, "resolver must be callable"),
    ],
)
def test_wrong_destination_options_are_config_errors(
    options: dict[str, object], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        WebhookSender(**options)  # type: ignore[arg-type]


def test_the_processor_refuses_a_template_with_a_refused_webhook_when_it_is_made() -> None:
    registry = TemplateRegistry()
    registry.template("t", webhook_url="https://169.254.169.254/", webhook_secret="s")
    client: object = object()
    with pytest.raises(WebhookDestinationError, match=r"169\.254\.169\.254"):
        JobProcessor(
            registry,
            s3_client=client,  # type: ignore[arg-type]
            sqs_client=client,  # type: ignore[arg-type]
            progress=ProgressQueue("https://q"),
            upload_bucket="uploads",
            output_bucket="out",
        )


def test_the_processor_makes_its_default_sender_only_for_a_template_with_a_webhook() -> None:
    client: object = object()

    def processor(registry: TemplateRegistry) -> JobProcessor:
        return JobProcessor(
            registry,
            s3_client=client,  # type: ignore[arg-type]
            sqs_client=client,  # type: ignore[arg-type]
            progress=ProgressQueue("https://q"),
            upload_bucket="uploads",
            output_bucket="out",
        )

    plain = TemplateRegistry()
    plain.template("t")
    assert processor(plain).webhooks is None
    hooked = TemplateRegistry()
    hooked.template("t", webhook_url="https://hooks.example.com/", webhook_secret="s")
    assert isinstance(processor(hooked).webhooks, WebhookSender)


def test_a_refusal_is_logged_once_and_counted(
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRANSFLOW_METRICS", "emf")
    sender = WebhookSender(resolver=nowhere)
    with caplog.at_level(logging.INFO, logger="transflow.processing.webhooks"):
        result = sender.deliver("https://10.0.0.1/x", b"{}", "secret")
    assert result.refused
    lines = [r for r in caplog.records if r.name == "transflow.processing.webhooks"]
    assert len(lines) == 1
    assert lines[0].levelno == logging.ERROR
    assert "https://10.0.0.1/x" in lines[0].getMessage()
    assert "allowed_networks=['10.0.0.1/32']" in lines[0].getMessage()
    stats = sender.stats()
    assert (stats.delivered, stats.failed, stats.refused) == (0, 1, 1)
    (metric,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (metric["WebhooksFailed"], metric["WebhooksRefused"]) == (1, 1)
    assert metric["Component"] == "webhooks"


def test_a_resolver_that_never_answers_cannot_hold_the_delivery_past_the_deadline() -> None:
    asked, release = threading.Event(), threading.Event()

    def stalled(host: str, port: int) -> Sequence[str]:
        asked.set()
        release.wait(30)
        return ["10.0.0.1"]  # refused, had it come in time: nothing connects either way

    sender = WebhookSender(attempts=3, deadline=0.2, resolver=stalled)
    try:
        result = sender.deliver("https://hooks.example.com/x", b"{}", "secret")
        assert asked.is_set()
        assert not release.is_set()  # deliver() came back while the resolver still hung
        assert (result.delivered, result.refused, result.attempts) == (False, False, 1)
        assert result.error is not None
        assert "deadline" in result.error
    finally:
        release.set()


# -- every spelling of every refused network ------------------------------------------------

DENIED = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::1/128",
        "::/128",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
    )
]


@st.composite
def denied_address(draw: st.DrawFn) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    network = draw(st.sampled_from(DENIED))
    offset = draw(st.integers(0, network.num_addresses - 1))
    return network[offset]


def spellings(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[str]:
    """The texts `ipaddress` or `socket.inet_aton` read as ``ip``."""
    if isinstance(ip, ipaddress.IPv6Address):
        return [f"[{ip.compressed}]", f"[{ip.exploded}]", f"[{ip.exploded.upper()}]"]
    n, octets = int(ip), list(ip.packed)
    mapped = ipaddress.IPv6Address(f"::ffff:{ip}")
    return [
        str(ip),
        str(n),
        hex(n),
        f"0{n:o}",
        ".".join(f"0{o:o}" for o in octets),
        ".".join(hex(o) for o in octets),
        f"{octets[0]}.{n & 0xFFFFFF}",
        f"{octets[0]}.{octets[1]}.{n & 0xFFFF}",
        f"[{mapped.compressed}]",
        f"[::ffff:{ip}]",
        f"[{mapped.exploded}]",
    ]


@given(denied_address())
def test_any_address_in_a_refused_network_is_refused_in_any_spelling(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    assert address_refusal(ip) is not None
    sender = WebhookSender(resolver=nowhere)
    for text in spellings(ip):
        if isinstance(ip, ipaddress.IPv4Address) and not text.startswith("["):
            assert socket.inet_aton(text) == ip.packed, text  # a form resolvers accept
        assert literal_address(text) is not None, text
        with pytest.raises(WebhookDestinationError):
            sender.check_url(f"https://{text}/hook")
        # The same address handed back by the resolver for a name is refused too.
        _, by_name = resolving_to(text.strip("[]"))
        with pytest.raises(WebhookDestinationError):
            by_name.resolve("https://hooks.example.com/hook")
