"""The host side of dyno networking: the bridge, addresses and veth names.

Each daemon instance owns one bridge, ``<instance>br``, holding the first
address of its dyno subnet as every dyno's gateway.  A dyno gets the lowest free
address of the subnet and a veth whose host end is named after that address
(``<instance>`` + the address's offset in hex), so the name is unique, at most
15 characters, and leads back to the address when a new daemon adopts running
dynos.  The launcher creates the veth itself (see :mod:`dynod.runtime.launcher`);
the kernel deletes it when the dyno's network namespace dies, and
:meth:`DynoNetwork.delete_link` removes any that outlive their dyno.

The bridge gets a fixed MAC address derived from the instance name.  A bridge
whose address was never set takes the lowest MAC of its ports and changes it
whenever that port leaves (``br_stp_recalculate_bridge_id`` in
net/bridge/br_stp_if.c); every dyno's ARP entry for its gateway then points at
a MAC that no longer exists, and replies to the router vanish until the entry
goes stale (tens of seconds).  Dynos leave all the time, so the address is set.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import ipaddress
from dataclasses import dataclass

import structlog
from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from dynod.errors import RuntimeFailure

log = structlog.get_logger("dynod.runtime")

IFNAMSIZ = 15


def bridge_name(instance: str) -> str:
    return f"{instance}br"


def bridge_mac(instance: str) -> str:
    """A stable, locally administered unicast MAC for the instance's bridge."""
    digest = hashlib.sha256(f"dynod-bridge:{instance}".encode()).digest()
    # 0x02 in the first octet: locally administered, unicast (IEEE 802).
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def _hex_width(subnet: ipaddress.IPv4Network) -> int:
    return max(4, (32 - subnet.prefixlen + 3) // 4)


def veth_name(instance: str, subnet: ipaddress.IPv4Network, ip: str) -> str:
    """The host end's name for the dyno at ``ip``."""
    offset = int(ipaddress.IPv4Address(ip)) - int(subnet.network_address)
    name = f"{instance}{offset:0{_hex_width(subnet)}x}"
    if len(name) > IFNAMSIZ:
        raise RuntimeFailure(
            f"Interface name {name!r} is longer than {IFNAMSIZ} characters: use a "
            "shorter instance name or a smaller dyno subnet."
        )
    return name


def veth_address(instance: str, subnet: ipaddress.IPv4Network, name: str) -> str | None:
    """The dyno address a veth name stands for, or None if it is not ours."""
    suffix = name[len(instance) :]
    if not name.startswith(instance) or len(suffix) != _hex_width(subnet):
        return None
    try:
        offset = int(suffix, 16)
    except ValueError:
        return None
    if not 0 < offset < subnet.num_addresses - 1:
        return None
    return str(subnet.network_address + offset)


class AddressPool:
    """Dyno addresses of one subnet: never the network, gateway or broadcast."""

    def __init__(self, subnet: ipaddress.IPv4Network) -> None:
        self.subnet = subnet
        self.gateway = subnet.network_address + 1
        self._used: set[ipaddress.IPv4Address] = set()

    @property
    def interface(self) -> ipaddress.IPv4Interface:
        """The gateway's address with the subnet's prefix."""
        return ipaddress.IPv4Interface(f"{self.gateway}/{self.subnet.prefixlen}")

    def reserve(self, ip: str) -> None:
        self._used.add(ipaddress.IPv4Address(ip))

    def allocate(self) -> str:
        """The lowest free address; raises RuntimeFailure when none is left."""
        for host in self.subnet.hosts():
            if host != self.gateway and host not in self._used:
                self._used.add(host)
                return str(host)
        raise RuntimeFailure(
            f"Dyno subnet {self.subnet} has no free address left: stop some dynos "
            "or configure a larger dyno_subnet."
        )

    def release(self, ip: str) -> None:
        self._used.discard(ipaddress.IPv4Address(ip))

    def used(self) -> builtins.list[str]:
        return sorted(str(ip) for ip in self._used)


@dataclass
class DynoNetwork:
    """Creates and removes this instance's bridge and stray veths."""

    instance: str
    subnet: ipaddress.IPv4Network

    @property
    def bridge(self) -> str:
        return bridge_name(self.instance)

    async def ensure_bridge(self) -> None:
        """Create the bridge with the gateway address, up; a no-op if it exists."""
        gateway = AddressPool(self.subnet).gateway
        async with AsyncIPRoute() as ipr:
            if not await ipr.link_lookup(ifname=self.bridge):
                await ipr.link("add", ifname=self.bridge, kind="bridge")
            (index,) = await ipr.link_lookup(ifname=self.bridge)
            # Fixed, so ports coming and going never change it (module docstring).
            await ipr.link("set", index=index, address=bridge_mac(self.instance))
            try:
                await ipr.addr(
                    "add",
                    index=index,
                    address=str(gateway),
                    prefixlen=self.subnet.prefixlen,
                )
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:
                    raise RuntimeFailure(
                        f"Could not put {gateway} on bridge {self.bridge}: {exc}."
                    ) from exc
            await ipr.link("set", index=index, state="up")

    async def links(self) -> builtins.list[str]:
        """Names of every link of this instance except the bridge."""
        async with AsyncIPRoute() as ipr:
            names = [link.get("ifname") async for link in await ipr.link("dump")]
        return [
            n for n in names if n and n.startswith(self.instance) and n != self.bridge
        ]

    async def delete_link(self, name: str) -> None:
        """Delete a link; one that is already gone is fine."""
        async with AsyncIPRoute() as ipr:
            indexes = await ipr.link_lookup(ifname=name)
            for index in indexes:
                try:
                    await ipr.link("del", index=index)
                except NetlinkError as exc:
                    if exc.code != errno.ENODEV:
                        raise
        if indexes:
            log.info("link removed", link=name)

    async def forget_neighbour(self, ip: str) -> None:
        """Drop the host's ARP entry for a dyno address before it is reused.

        A dead dyno's entry (its eth0's MAC) would otherwise outlive it as
        STALE, and the next dyno given the address gets no packet from the
        host until the entry fails its probes (``delay_first_probe_time`` plus
        ``ucast_solicit`` probes, 8 s by default; Documentation/networking/
        ip-sysctl.rst): the router's connections to it time out meanwhile.
        """
        async with AsyncIPRoute() as ipr:
            indexes = await ipr.link_lookup(ifname=self.bridge)
            for index in indexes:
                try:
                    await ipr.neigh("del", dst=ip, ifindex=index)
                except NetlinkError as exc:
                    if exc.code not in (errno.ENOENT, errno.ESRCH, errno.ENODEV):
                        raise

    async def destroy(self) -> None:
        for name in await self.links():
            await self.delete_link(name)
        await self.delete_link(self.bridge)
