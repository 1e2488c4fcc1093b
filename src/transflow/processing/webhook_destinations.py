"""Where a webhook may go: https to public addresses, unless the host says otherwise.

A webhook URL is a place transflow POSTs to from inside the host's network, where the cloud
metadata service hands out credentials and internal services trust whoever reaches them.
So by default a URL is refused (:class:`~transflow.errors.WebhookDestinationError`) when it
is cleartext ``http`` or when its host is, or resolves to, a loopback, private, link-local,
shared (CGNAT), multicast, reserved or unspecified address, in any spelling
(``2852039166``, ``0xa9fea9fe``, ``0251.0376.0251.0376``, ``::ffff:169.254.169.254``,
NAT64 and 6to4 wrappings) or is named ``localhost``. ``allow_http``, ``allowed_hosts`` and
``allowed_networks`` lift these refusals for what a team trusts; cloud metadata addresses
are refused whatever the options say.

:meth:`DestinationPolicy.parse` checks what a URL alone tells (scheme, literal addresses,
``localhost``) and needs no network; :meth:`DestinationPolicy.addresses` resolves the host
once and checks every address, and the sender connects to one of exactly those addresses.
Pure apart from the resolver it is given.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Collection, Sequence
from urllib.parse import urlsplit

import attrs

from transflow.errors import ConfigError, WebhookDestinationError

__all__ = [
    "METADATA_ADDRESSES",
    "Address",
    "DestinationPolicy",
    "Network",
    "Resolver",
    "WebhookTarget",
    "address_refusal",
    "literal_address",
    "system_resolver",
]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]
"""``(host, port) -> addresses``: how a host name becomes the addresses to connect to."""

METADATA_ADDRESSES: frozenset[Address] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # EC2 instance metadata (IMDS), also GCP and Azure
        "169.254.170.2",  # ECS task credentials
        "169.254.170.23",  # EKS pod identity
        "fd00:ec2::254",  # IMDS over IPv6
        "fd00:ec2::23",  # EKS pod identity over IPv6
    )
)
"""Addresses that hand out credentials: never a webhook's destination, whatever the options."""

_SHARED = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT, not global
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated IPv4-compatible ::a.b.c.d


def literal_address(host: str) -> Address | None:
    """The address ``host`` spells, in any form a resolver would read as one (``127.1``,
    ``0x7f000001``, ``2130706433``, ``[::1]``), or None for a name."""
    text = host.strip("[]")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    try:
        # inet_aton reads the decimal, hex, octal and short forms getaddrinfo accepts too.
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except (OSError, ValueError):
        return None


def _embedded_ipv4(ip: Address) -> ipaddress.IPv4Address | None:
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64 or (ip in _COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _refusal(ip: Address) -> str | None:
    checks = (
        (ip in METADATA_ADDRESSES, "a cloud metadata address (it hands out credentials)"),
        (ip.is_unspecified, "the unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_reserved, "a reserved address"),
        (ip.is_private, "a private address"),
        (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local, "a site-local address"),
        (ip in _SHARED, "a shared (carrier-grade NAT) address"),
        (not ip.is_global, "not a public address"),
    )
    return next((reason for refused, reason in checks if refused), None)


def address_refusal(ip: Address) -> str | None:
    """Why ``ip`` is no place for a webhook (``"a private address"``), or None when it is a
    public address. An IPv4 address wrapped in IPv6 (mapped, 6to4, Teredo, NAT64) is judged
    as itself too."""
    reason = _refusal(ip)
    if reason is not None:
        return reason
    inner = _embedded_ipv4(ip)
    if inner is not None and (inner_reason := _refusal(inner)) is not None:
        return f"{inner_reason} ({inner}) wrapped in IPv6"
    return None


def _is_metadata(ip: Address) -> bool:
    inner = _embedded_ipv4(ip)
    return ip in METADATA_ADDRESSES or (inner is not None and inner in METADATA_ADDRESSES)


def system_resolver(host: str, port: int) -> list[str]:
    """The TCP addresses of ``host``, from the system resolver, in its order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@attrs.frozen
class WebhookTarget:
    """A webhook URL taken apart: ``host`` is what the Host header, SNI and certificate
    check use; the connection goes to an address checked by :class:`DestinationPolicy`."""

    url: str
    https: bool
    host: str
    port: int
    path: str


def _local_name(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


def _normal_host(host: str) -> str:
    return host.rstrip(".").lower()


@attrs.frozen
class DestinationPolicy:
    """What a sender may POST to. Build it with :meth:`build` (which checks the options)."""

    allow_http: bool = False
    allowed_hosts: frozenset[str] = frozenset()
    allowed_networks: tuple[Network, ...] = ()

    @classmethod
    def build(
        cls,
        owner: str,
        allow_http: object,
        allowed_hosts: Collection[str],
        allowed_networks: Collection[str | Network],
    ) -> DestinationPolicy:
        """The policy for these options; raises :class:`ConfigError` naming ``owner`` and
        the option for a wrong one."""
        if not isinstance(allow_http, bool):
            raise ConfigError(f"{owner} allow_http must be True or False, not {allow_http!r}")
        if isinstance(allowed_hosts, str | bytes) or not all(
            isinstance(h, str) and _normal_host(h) for h in allowed_hosts
        ):
            raise ConfigError(
                f"{owner} allowed_hosts must be a list of host names, not {allowed_hosts!r}"
            )
        if isinstance(allowed_networks, str | bytes):
            raise ConfigError(
                f"{owner} allowed_networks must be a list of networks (['10.1.0.0/16']), "
                f"not the string {allowed_networks!r}"
            )
        networks: list[Network] = []
        for item in allowed_networks:
            try:
                networks.append(ipaddress.ip_network(item))
            except (TypeError, ValueError) as exc:
                raise ConfigError(
                    f"{owner} allowed_networks must hold networks such as '10.1.0.0/16' or "
                    f"'fd12::/64' (host bits zero), not {item!r}: {exc}"
                ) from None
        hosts = frozenset(_normal_host(h) for h in allowed_hosts)
        return cls(allow_http, hosts, tuple(networks))

    def parse(self, url: object) -> WebhookTarget:
        """Check what ``url`` alone tells: an absolute https URL (http only with
        ``allow_http``) whose host is not a refused literal address nor ``localhost``.
        Needs no network; raises :class:`WebhookDestinationError`."""
        if not isinstance(url, str):
            raise WebhookDestinationError(url, "it is not a string", "pass an https URL")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise WebhookDestinationError(
                url, f"it is not a valid URL ({exc})", "fix the URL"
            ) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise WebhookDestinationError(
                url, "it is not an absolute http(s) URL", "use https://host/path"
            )
        https = parts.scheme == "https"
        if not https and not self.allow_http:
            raise WebhookDestinationError(
                url,
                "it is cleartext http: the signed status record would cross the network "
                "unencrypted",
                "use https, or pass WebhookSender(allow_http=True) for a receiver you trust",
            )
        host = _normal_host(parts.hostname)
        target = WebhookTarget(
            url,
            https,
            host,
            port or (443 if https else 80),
            (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
        )
        literal = literal_address(host)
        if literal is not None:
            self.check(target, literal)
        elif _local_name(host) and host not in self.allowed_hosts:
            raise WebhookDestinationError(
                url,
                f"{host} names this machine",
                f"pass WebhookSender(allowed_hosts=[{host!r}]) if that receiver is yours",
            )
        return target

    def check(self, target: WebhookTarget, ip: Address) -> None:
        """Refuse (:class:`WebhookDestinationError`) connecting to ``ip`` for ``target``
        unless it is a public address, an allowed one, or ``target``'s host is allowed."""
        literal = literal_address(target.host) == ip
        where = f"{target.host} is" if literal else f"{target.host} resolves to {ip},"
        if _is_metadata(ip):
            raise WebhookDestinationError(
                target.url,
                f"{where} a cloud metadata address, which hands out credentials",
                "no option allows it: point webhook_url at your receiver",
            )
        reason = address_refusal(ip)
        if reason is None or target.host in self.allowed_hosts:
            return
        if any(ip.version == n.version and ip in n for n in self.allowed_networks):
            return
        network = ipaddress.ip_network(f"{ip}/{ip.max_prefixlen}")
        hint = f"pass WebhookSender(allowed_networks=[{str(network)!r}])"
        if not literal:
            hint += f" or allowed_hosts=[{target.host!r}]"
        raise WebhookDestinationError(
            target.url,
            f"{where} {reason}; webhooks go to public addresses only, so a template cannot "
            "reach inside the network",
            f"{hint} if that receiver is yours",
        )

    def addresses(self, target: WebhookTarget, resolver: Resolver) -> tuple[Address, ...]:
        """Resolve ``target``'s host once and check every address: one refused address
        refuses them all (a rebinding name hands out a public and a private one).
        Raises :class:`WebhookDestinationError`, or ``OSError`` when resolution fails."""
        literal = literal_address(target.host)
        if literal is not None:
            found: list[Address] = [literal]
        else:
            found = []
            for text in resolver(target.host, target.port):
                ip = literal_address(str(text))
                if ip is None:
                    raise OSError(f"the resolver gave {text!r} for {target.host}")
                found.append(ip)
        if not found:
            raise OSError(f"{target.host} resolves to no address")
        for ip in found:
            self.check(target, ip)
        return tuple(found)
