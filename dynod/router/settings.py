"""Timeouts and limits of one router worker.

The defaults are Heroku's; tests shorten them through the command line so a
30-second timeout can be checked in a fraction of a second.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RouterSettings:
    # Per connection attempt to a dyno; a timeout counts as H19.
    connect_timeout: float = 5.0
    # Attempts across the app's dynos before giving up with H19/H21.
    connect_attempts: int = 10
    # All connection attempts and waits for quarantined dynos of one request
    # together; when every dyno stays quarantined this long: H99.
    connect_budget: float = 75.0
    # A dyno that refused or timed out is avoided for this long (per worker).
    quarantine: float = 5.0
    # From the request being sent to the dyno's first response byte: H12.
    first_byte_timeout: float = 30.0
    # After the first byte, no byte either way for this long: H15 (the dyno
    # went quiet) or H28 (the client stopped sending its request).
    idle_timeout: float = 55.0
    # Requests in flight per app and worker, per web dyno, before H11.
    backlog_per_dyno: int = 200
    # How long a request waits for a booting app to get a running dyno: H20.
    boot_wait: float = 75.0
    # How often a waiting request looks at the route table again.
    boot_poll: float = 0.05
    # How often the route table file is stat'ed for a change.
    table_poll: float = 0.05
    # Idle keep-alive connections: client side, and pooled ones to dynos.  The
    # dyno side stays under Heroku's 90 s so the router, not the app, closes.
    client_idle_timeout: float = 60.0
    # From a request's first byte to the end of its head; slower clients are
    # disconnected (slow-loris).
    header_timeout: float = 30.0
    upstream_idle_timeout: float = 60.0
    # Idle pooled connections kept per dyno.
    pool_size: int = 128
    # Request body bytes kept so an idempotent request can be sent again when a
    # pooled connection turns out to be dead; a longer body is never retried.
    replay_limit: int = 64 * 1024
    # On SIGTERM, how long in-flight requests may take to finish.
    drain_timeout: float = 10.0
