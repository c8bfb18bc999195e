"""Host name rules for custom domains and for the names certificates cover."""

from __future__ import annotations

import re

from dynod.errors import InvalidDomain

# RFC 1123 labels; a leading "*." is allowed for wildcard domains.
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOSTNAME_RE = re.compile(rf"^(\*\.)?({_LABEL}\.)+{_LABEL}$")


def hostname(value: object, router_domain: str) -> str:
    """``value`` as a custom domain (lower-case), or :class:`InvalidDomain`.

    Names under the router's own domain are refused: they are the apps'
    default hosts, and claiming one would take it from another app.
    """
    if not isinstance(value, str) or len(value) > 253:
        raise InvalidDomain(
            f"Domain {value!r} is invalid: give a host name like www.example.com."
        )
    host = value.strip().lower().rstrip(".")
    if not _HOSTNAME_RE.match(host):
        raise InvalidDomain(
            f"Domain {value!r} is invalid: use letters, digits, dashes and dots, "
            "like www.example.com (a leading *. for a wildcard)."
        )
    if host == router_domain or host.endswith("." + router_domain):
        raise InvalidDomain(
            f"Domain {host} is under the router's own domain {router_domain}, "
            "where apps get their default names: use a domain of your own."
        )
    return host


def covers(pattern: str, host: str) -> bool:
    """True when a certificate name ``pattern`` (maybe ``*.x``) covers ``host``.

    A wildcard covers exactly one label (RFC 6125 §6.4.3).
    """
    pattern, host = pattern.lower(), host.lower()
    if pattern == host:
        return True
    if pattern.startswith("*."):
        first, dot, rest = host.partition(".")
        return bool(first) and dot == "." and rest == pattern[2:]
    return False
