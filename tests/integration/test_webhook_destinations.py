"""Webhook destinations against real local servers: a receiver on loopback is refused unless
the sender's options allow it, and the connection goes to exactly the address that was
checked, with the URL's host in the Host header, the TLS SNI and the certificate check."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from transflow import WebhookDestinationError, WebhookSender
from transflow.processing.webhook_destinations import Resolver

SECRET = "hook-secret"


@attrs.define
class Receiver:
    """Records the Host header of every POST (and the TLS server name asked for)."""

    port: int = 0
    hosts: list[str] = attrs.field(factory=list)
    server_names: list[str | None] = attrs.field(factory=list)


def _serve(state: Receiver, context: ssl.SSLContext | None = None) -> Iterator[Receiver]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.hosts.append(self.headers["Host"])
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.port = server.server_address[1]
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from _serve(Receiver())


def pinned(name: str, address: str = "127.0.0.1") -> tuple[list[tuple[str, int]], Resolver]:
    """A resolver that knows one name (the system resolver knows none of these)."""
    calls: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> Sequence[str]:
        calls.append((host, port))
        assert host == name
        return [address]

    return calls, resolve


def quick(**options: Any) -> WebhookSender:
    settings: dict[str, Any] = {"timeout": 5, "attempts": 2, "initial_wait": 0.001}
    return WebhookSender(**{**settings, "max_wait": 0.01, **options})


def test_a_loopback_receiver_is_refused_by_default(receiver: Receiver) -> None:
    for url, sender, option in [
        (f"http://127.0.0.1:{receiver.port}/hook", quick(), "allow_http=True"),
        (f"http://127.0.0.1:{receiver.port}/hook", quick(allow_http=True), "allowed_networks"),
        (f"http://localhost:{receiver.port}/hook", quick(allow_http=True), "allowed_hosts"),
        (f"http://2130706433:{receiver.port}/hook", quick(allow_http=True), "allowed_networks"),
        (f"http://[::ffff:7f00:1]:{receiver.port}/", quick(allow_http=True), "allowed_networks"),
    ]:
        with pytest.raises(WebhookDestinationError, match=option):
            sender.check_url(url)
        result = sender.deliver(url, b"{}", SECRET)
        assert (result.delivered, result.refused) == (False, True), url
        assert result.error is not None
        assert option in result.error
        assert sender.stats().refused == 1
    assert receiver.hosts == []  # nothing reached the receiver


def test_the_explicit_options_let_a_trusted_loopback_receiver_in(receiver: Receiver) -> None:
    url = f"http://127.0.0.1:{receiver.port}/hook"
    result = quick(allow_http=True, allowed_networks=["127.0.0.0/8"]).deliver(url, b"{}", SECRET)
    assert (result.delivered, result.status) == (True, 200)
    named = quick(allow_http=True, allowed_hosts=["localhost"])
    assert named.deliver(f"http://localhost:{receiver.port}/hook", b"{}", SECRET).delivered
    assert named.stats().delivered == 1


def test_the_connection_goes_to_the_checked_address_with_the_urls_host(
    receiver: Receiver,
) -> None:
    calls, resolve = pinned("hooks.test")
    sender = quick(allow_http=True, allowed_hosts=["hooks.test"], resolver=resolve)
    result = sender.deliver(f"http://hooks.test:{receiver.port}/hook", b"{}", SECRET)
    assert (result.delivered, result.status) == (True, 200)
    assert calls == [("hooks.test", receiver.port)]  # resolved once, never again to connect
    assert receiver.hosts == [f"hooks.test:{receiver.port}"]


def test_a_name_that_resolves_to_a_private_address_is_refused_at_delivery(
    receiver: Receiver,
) -> None:
    calls, resolve = pinned("rebind.test")
    sender = quick(allow_http=True, resolver=resolve)
    url = f"http://rebind.test:{receiver.port}/hook"
    sender.check_url(url)  # the name alone passes at configuration time
    result = sender.deliver(url, b"{}", SECRET)
    assert (result.delivered, result.refused, result.attempts) == (False, True, 1)
    assert result.error is not None
    assert "rebind.test resolves to 127.0.0.1, a loopback address" in result.error
    assert "allowed_hosts=['rebind.test']" in result.error
    assert calls == [("rebind.test", receiver.port)]
    assert receiver.hosts == []


# -- TLS: the certificate is checked against the URL's host, not the address -------------


def _certificates(tmp: Path, name: str) -> tuple[Path, ssl.SSLContext]:
    """A CA (its PEM file) and a server context whose certificate, signed by it, is for
    ``name`` only."""
    now = datetime.datetime.now(datetime.timezone.utc)

    def build(subject: str, issuer: x509.Name, key: Any, signer: Any, ca: bool) -> Any:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "transflow test CA")])
    ca = build("transflow test CA", ca_name, ca_key, ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = build(name, ca_name, key, ca_key, ca=False)
    (tmp / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp / "leaf.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp / "leaf.pem", tmp / "leaf.key")
    return tmp / "ca.pem", server


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[tuple[Receiver, ssl.SSLContext]]:
    ca, server = _certificates(tmp_path, "hooks.test")
    state = Receiver()

    def remember(sock: Any, server_name: str | None, _: Any) -> None:
        state.server_names.append(server_name)

    server.sni_callback = remember
    client = ssl.create_default_context(cafile=str(ca))
    yield from ((s, client) for s in _serve(state, server))


def test_tls_goes_to_the_checked_address_with_the_urls_host_as_sni_and_certificate_name(
    tls_receiver: tuple[Receiver, ssl.SSLContext],
) -> None:
    receiver, client = tls_receiver
    _, resolve = pinned("hooks.test")
    sender = quick(allowed_hosts=["hooks.test"], resolver=resolve, ssl_context=client)
    result = sender.deliver(f"https://hooks.test:{receiver.port}/hook", b"{}", SECRET)
    assert (result.delivered, result.status) == (True, 200), result
    assert receiver.server_names == ["hooks.test"]
    assert receiver.hosts == [f"hooks.test:{receiver.port}"]


def test_tls_refuses_a_certificate_for_another_name(
    tls_receiver: tuple[Receiver, ssl.SSLContext],
) -> None:
    receiver, client = tls_receiver
    _, resolve = pinned("other.test")
    sender = quick(attempts=1, allowed_hosts=["other.test"], resolver=resolve, ssl_context=client)
    result = sender.deliver(f"https://other.test:{receiver.port}/hook", b"{}", SECRET)
    assert not result.delivered
    assert result.error is not None
    assert "certificate" in result.error.lower()
    assert receiver.server_names == ["other.test"]
    assert receiver.hosts == []


def test_allowed_networks_are_matched_on_the_resolved_address(receiver: Receiver) -> None:
    # Allowing one address of loopback does not allow its neighbours.
    _, resolve = pinned("hooks.test", "127.0.0.1")
    narrow = quick(allow_http=True, allowed_networks=["127.0.0.2/32"], resolver=resolve)
    result = narrow.deliver(f"http://hooks.test:{receiver.port}/", b"{}", SECRET)
    assert result.refused
    wide = quick(
        allow_http=True,
        allowed_networks=[ipaddress.ip_network("127.0.0.0/30")],
        resolver=resolve,
    )
    assert wide.deliver(f"http://hooks.test:{receiver.port}/", b"{}", SECRET).delivered
    assert receiver.hosts == [f"hooks.test:{receiver.port}"]
