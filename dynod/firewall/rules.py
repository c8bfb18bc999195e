"""What the host firewall says, as ``iptables-restore`` text (pure; no I/O).

dynod owns these chains per instance, named with the instance string so that
anything left behind is easy to attribute::

    <instance>-INPUT   filter, jumped to from INPUT for packets from the bridge
    <instance>-OUT     filter, jumped to from OUTPUT for packets to the bridge
    <instance>-WEB     filter, from <instance>-OUT: one rule per routed web dyno
    <instance>-FWD     filter, jumped to from FORWARD
    <instance>-POST    nat, jumped to from POSTROUTING
    <instance>-V6      ip6 filter, from INPUT/FORWARD/OUTPUT on the bridge

Policy, in order of evaluation:

* dyno → host (INPUT from the bridge): only replies to connections the host
  opened.  Every packet a dyno sends to any of the host's own addresses (the
  gateway, the uplink's, any other interface's) is delivered locally, so it
  arrives through the bridge and meets this drop.  No DNS on the host: dynos
  use the host's upstream resolvers through NAT.
* host → dyno (OUTPUT to the bridge): replies, and new connections only to a
  web dyno's own ``$PORT`` (the router; other TCP connections are reset at
  once), listed in ``<instance>-WEB`` from the
  route table; anything else the host would open to a dyno is dropped.
* IPv6: dynos keep IPv6 inside their namespace (``[::]:$PORT`` apps work) but
  get no IPv6 route out, and every IPv6 packet between them and the host or
  each other (link-local included) is dropped.
* dyno → dyno (bridge to bridge, seen by FORWARD because the bridge hands
  frames to iptables with ``bridge-nf-call-iptables=1``): dropped.
* dyno → the resolvers in the stack's ``resolv.conf``, port 53 only: accepted,
  even when they sit in a private range (home routers, cloud VPC resolvers), or
  dynos could not resolve names.
* dyno → private ranges (RFC 1918, RFC 6598 shared space) and link-local
  (RFC 3927, home of cloud metadata endpoints): dropped unless a reply.
* dyno → anything else: accepted, and replies back in; masqueraded on the way
  out of the dyno subnet.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from dynod.errors import FirewallError

# Destinations a dyno must not open connections to.
BLOCKED_RANGES = (
    IPv4Network("10.0.0.0/8"),
    IPv4Network("172.16.0.0/12"),
    IPv4Network("192.168.0.0/16"),
    IPv4Network("100.64.0.0/10"),
    IPv4Network("169.254.0.0/16"),
)
# iptables limits chain names to 28 characters (XT_EXTENSION_MAXNAMELEN - 1).
MAX_CHAIN_NAME = 28
REPLIES = "-m conntrack --ctstate ESTABLISHED,RELATED"


@dataclass(frozen=True)
class FirewallPlan:
    """The inputs of the rules: whose they are and which network they guard."""

    instance: str
    bridge: str
    subnet: IPv4Network
    gateway: IPv4Address
    # Resolvers dynos may reach on port 53 (from the stack's resolv.conf).
    dns_servers: tuple[IPv4Address, ...] = ()

    @property
    def input_chain(self) -> str:
        return f"{self.instance.upper()}-INPUT"

    @property
    def output_chain(self) -> str:
        return f"{self.instance.upper()}-OUT"

    @property
    def web_chain(self) -> str:
        return f"{self.instance.upper()}-WEB"

    @property
    def v6_chain(self) -> str:
        return f"{self.instance.upper()}-V6"

    @property
    def forward_chain(self) -> str:
        return f"{self.instance.upper()}-FWD"

    @property
    def postrouting_chain(self) -> str:
        return f"{self.instance.upper()}-POST"

    def jumps(self) -> list[tuple[str, str, list[str]]]:
        """(table, built-in chain, rule spec) of each jump into our chains."""
        return [
            ("filter", "INPUT", ["-i", self.bridge, "-j", self.input_chain]),
            ("filter", "OUTPUT", ["-o", self.bridge, "-j", self.output_chain]),
            ("filter", "FORWARD", ["-j", self.forward_chain]),
            ("nat", "POSTROUTING", ["-j", self.postrouting_chain]),
        ]

    def jumps6(self) -> list[tuple[str, str, list[str]]]:
        """(table, built-in chain, rule spec) of each ip6tables jump."""
        br, v6 = self.bridge, self.v6_chain
        return [
            ("filter", "INPUT", ["-i", br, "-j", v6]),
            ("filter", "FORWARD", ["-i", br, "-j", v6]),
            ("filter", "FORWARD", ["-o", br, "-j", v6]),
            ("filter", "OUTPUT", ["-o", br, "-j", v6]),
        ]


@dataclass(frozen=True, order=True)
class WebPort:
    """A web dyno the router may open connections to: its address and $PORT."""

    addr: IPv4Address
    port: int


def render(plan: FirewallPlan, web: Iterable[WebPort] = ()) -> str:
    """The ``iptables-restore --noflush`` input that (re)writes our chains.

    Declaring a chain flushes it, so applying this text replaces our rules in one
    transaction per table and leaves every other chain alone.  The jumps from
    the built-in chains are not in it (see :class:`dynod.firewall.Firewall`).
    """
    for chain in (plan.input_chain, plan.forward_chain, plan.postrouting_chain):
        # The longest suffix is "-INPUT", so these cover every chain.
        if len(chain) > MAX_CHAIN_NAME:
            raise FirewallError(
                f"Chain name {chain!r} is longer than 28 characters; "
                "use a shorter instance name."
            )
    br, fwd, out = plan.bridge, plan.forward_chain, plan.output_chain
    lines = [
        "*filter",
        f":{plan.input_chain} - [0:0]",
        f":{out} - [0:0]",
        f":{fwd} - [0:0]",
        *web_rules(plan, web),
        # Dyno to host: replies to what the host opened, nothing else.
        f"-A {plan.input_chain} {REPLIES} -j ACCEPT",
        f"-A {plan.input_chain} -j DROP",
        # Host to dyno: replies, and the router to a web dyno's $PORT.  Anything
        # else is refused at once rather than dropped: a host process (the
        # router among them) learns in microseconds instead of a connect
        # timeout, and may try elsewhere.
        f"-A {out} {REPLIES} -j ACCEPT",
        f"-A {out} -j {plan.web_chain}",
        f"-A {out} -p tcp -j REJECT --reject-with tcp-reset",
        f"-A {out} -j DROP",
        # Dyno to dyno, replies included: nothing.
        f"-A {fwd} -i {br} -o {br} -j DROP",
        # Replies in either direction between dynos and the outside.
        f"-A {fwd} -o {br} {REPLIES} -j ACCEPT",
        f"-A {fwd} -i {br} {REPLIES} -j ACCEPT",
    ]
    # Dyno to its resolvers, wherever they are: DNS only.
    for server in plan.dns_servers:
        lines += [
            f"-A {fwd} -i {br} -d {server}/32 -p {proto} --dport 53 -j ACCEPT"
            for proto in ("udp", "tcp")
        ]
    # Dyno to private and link-local networks: dropped.
    lines += [f"-A {fwd} -i {br} -d {net} -j DROP" for net in BLOCKED_RANGES]
    lines += [
        # Dyno to the rest of the world: allowed.
        f"-A {fwd} -i {br} -j ACCEPT",
        "COMMIT",
        "*nat",
        f":{plan.postrouting_chain} - [0:0]",
        f"-A {plan.postrouting_chain} -s {plan.subnet} ! -d {plan.subnet} "
        "-j MASQUERADE",
        "COMMIT",
    ]
    return "\n".join(lines) + "\n"


def web_rules(plan: FirewallPlan, web: Iterable[WebPort]) -> list[str]:
    """The declaration and rules of ``<instance>-WEB`` (filter table lines)."""
    return [f":{plan.web_chain} - [0:0]"] + [
        f"-A {plan.web_chain} -d {w.addr}/32 -p tcp --dport {w.port} -j ACCEPT"
        for w in sorted(set(web))
    ]


def render_web(plan: FirewallPlan, web: Iterable[WebPort]) -> str:
    """``iptables-restore --noflush`` input replacing only ``<instance>-WEB``."""
    return "\n".join(["*filter", *web_rules(plan, web), "COMMIT"]) + "\n"


def render6(plan: FirewallPlan) -> str:
    """``ip6tables-restore --noflush`` input: the IPv6 chain, which drops all."""
    return f"*filter\n:{plan.v6_chain} - [0:0]\n-A {plan.v6_chain} -j DROP\nCOMMIT\n"
