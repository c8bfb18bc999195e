"""A minimal rtnetlink client for the launcher's hot path.

The launcher runs in a child forked from the spawner, where pyroute2 is both
slow to import and unsafe to reuse (its sockets are bound per thread and event
loop, and a socket opened before ``unshare(CLONE_NEWNET)`` silently keeps
talking to the old namespace).  Here a socket is an explicit object: it talks to
the network namespace that was current when it was opened, which is exactly
what the launcher relies on to create a veth from the host side after it has
already entered the dyno's namespace.

Only what a dyno needs is encoded: create a veth with its peer in another
namespace, set a link up, add an IPv4 address and a default route.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct

_RTM_NEWLINK = 16
_RTM_NEWADDR = 20
_RTM_NEWROUTE = 24
_NLMSG_ERROR = 2
_NLM_F_REQUEST = 0x1
_NLM_F_ACK = 0x4
_NLM_F_EXCL = 0x200
_NLM_F_CREATE = 0x400

_IFLA_IFNAME = 3
_IFLA_MASTER = 10
_IFLA_LINKINFO = 18
_IFLA_NET_NS_FD = 28
_IFLA_INFO_KIND = 1
_IFLA_INFO_DATA = 2
_VETH_INFO_PEER = 1
_IFF_UP = 0x1

_IFA_ADDRESS = 1
_IFA_LOCAL = 2
_IFA_BROADCAST = 4

_RTA_GATEWAY = 5
_RT_TABLE_MAIN = 254
_RTPROT_BOOT = 3
_RTN_UNICAST = 1

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")


def _attr(kind: int, payload: bytes) -> bytes:
    """One rtattr, padded to the 4-byte alignment netlink requires."""
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _ifinfo(index: int = 0, up: bool = False) -> bytes:
    flags = _IFF_UP if up else 0
    return _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, _IFF_UP if up else 0)


class Netlink:
    """An rtnetlink socket bound to the network namespace current at creation."""

    def __init__(self) -> None:
        self._sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0
        )
        self._sock.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def _request(self, kind: int, flags: int, body: bytes) -> None:
        """Send one request and wait for its acknowledgement; raise on error."""
        self._seq += 1
        header = _NLMSGHDR.pack(
            _NLMSGHDR.size + len(body),
            kind,
            _NLM_F_REQUEST | _NLM_F_ACK | flags,
            self._seq,
            0,
        )
        self._sock.send(header + body)
        while True:
            data = self._sock.recv(65536)
            offset = 0
            while offset < len(data):
                length, msg_type, _, seq, _ = _NLMSGHDR.unpack_from(data, offset)
                if msg_type == _NLMSG_ERROR and seq == self._seq:
                    (error,) = struct.unpack_from("=i", data, offset + _NLMSGHDR.size)
                    if error:
                        raise OSError(-error, os.strerror(-error))
                    return
                offset += (length + 3) & ~3

    def add_veth(
        self, name: str, master: int, peer_name: str, peer_netns_fd: int
    ) -> None:
        """Create veth ``name`` (up, on bridge ``master``) with its peer in a netns."""
        peer = (
            _ifinfo()
            + _attr(_IFLA_IFNAME, peer_name.encode() + b"\0")
            + _attr(_IFLA_NET_NS_FD, struct.pack("=I", peer_netns_fd))
        )
        linkinfo = _attr(_IFLA_INFO_KIND, b"veth\0") + _attr(
            _IFLA_INFO_DATA, _attr(_VETH_INFO_PEER, peer)
        )
        body = (
            _ifinfo(up=True)
            + _attr(_IFLA_IFNAME, name.encode() + b"\0")
            + _attr(_IFLA_MASTER, struct.pack("=I", master))
            + _attr(_IFLA_LINKINFO, linkinfo)
        )
        self._request(_RTM_NEWLINK, _NLM_F_CREATE | _NLM_F_EXCL, body)

    def set_up(self, index: int) -> None:
        self._request(_RTM_NEWLINK, 0, _ifinfo(index, up=True))

    def add_address(self, index: int, interface: ipaddress.IPv4Interface) -> None:
        packed = interface.ip.packed
        body = (
            _IFADDRMSG.pack(socket.AF_INET, interface.network.prefixlen, 0, 0, index)
            + _attr(_IFA_LOCAL, packed)
            + _attr(_IFA_ADDRESS, packed)
            + _attr(_IFA_BROADCAST, interface.network.broadcast_address.packed)
        )
        self._request(_RTM_NEWADDR, _NLM_F_CREATE | _NLM_F_EXCL, body)

    def add_default_route(self, gateway: ipaddress.IPv4Address) -> None:
        body = _RTMSG.pack(
            socket.AF_INET, 0, 0, 0, _RT_TABLE_MAIN, _RTPROT_BOOT, 0, _RTN_UNICAST, 0
        ) + _attr(_RTA_GATEWAY, gateway.packed)
        self._request(_RTM_NEWROUTE, _NLM_F_CREATE | _NLM_F_EXCL, body)
