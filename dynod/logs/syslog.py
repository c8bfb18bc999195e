"""History lines as syslog messages, framed for drains.

A history line ``TIMESTAMP SOURCE[DYNO]: MESSAGE`` becomes an RFC 5424 message
``<PRI>1 TIMESTAMP TOKEN SOURCE DYNO - - MESSAGE``: the drain token is the
HOSTNAME, the source (``app`` or ``dynod``) the APP-NAME, the dyno the PROCID,
and MSGID and STRUCTURED-DATA are nil (RFC 5424 §6).  Every message is
octet-counted, ``LEN SP MSG`` (RFC 6587 §3.4.1), for TCP and TLS syslog and
for logplex-1 HTTPS bodies alike; the HTTPS form leaves STRUCTURED-DATA out,
as Logplex does.

PRI follows Heroku: app lines are local7.info (190), router lines local3.info
(158), dynod's own notices (``dynod[logs]``: L10, L11, L14) local5.warning (172)
and every other platform line syslog.notice (45).
"""

from __future__ import annotations

PRI_APP = 190
PRI_ROUTER = 158
PRI_NOTICE = 172
PRI_PLATFORM = 45


def pri(source: bytes, dyno: bytes) -> int:
    if source == b"app":
        return PRI_APP
    if dyno == b"router":
        return PRI_ROUTER
    if dyno == b"logs":
        return PRI_NOTICE
    return PRI_PLATFORM


def frame(
    data: bytes, host: bytes, *, structured_data: bool = True
) -> tuple[bytes, int]:
    """Octet-counted messages for the history lines in ``data``, and their count.

    Lines that are not in the history's form (a line mended after a crash) are
    skipped.
    """
    nil = b" - - " if structured_data else b" - "
    out: list[bytes] = []
    append = out.append
    for line in data.split(b"\n"):
        space = line.find(b" ")
        bracket = line.find(b"[", space)
        close = line.find(b"]: ", bracket)
        if space <= 0 or bracket < 0 or close < 0:
            continue
        source, dyno = line[space + 1 : bracket], line[bracket + 1 : close]
        message = b"".join(
            (
                b"<%d>1 " % pri(source, dyno),
                line[:space],
                b" ",
                host,
                b" ",
                source,
                b" ",
                dyno or b"-",
                nil,
                line[close + 3 :],
            )
        )
        append(b"%d %s" % (len(message), message))
    return b"".join(out), len(out)
