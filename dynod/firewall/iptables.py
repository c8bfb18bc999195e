"""Applying the rules to the host with the nft-backed ``iptables`` tools.

``iptables-restore --noflush`` (and ``ip6tables-restore``) replaces our chains
atomically per table and touches nothing else; the jumps from the built-in
chains are added only when ``iptables -C`` does not find them, so applying twice
changes nothing and applying after a crash repairs whatever is missing.  The
rules stay visible to the host's ``iptables -S``.  (python-iptables would drive
the legacy backend instead, whose rules ``iptables -S`` does not show.)

Kernel settings the rules depend on are managed, not assumed:

* ``net.ipv4.ip_forward`` must be 1 for dynos to reach the outside;
* ``net.bridge.bridge-nf-call-iptables`` and ``-ip6tables`` must be 1, or
  frames between two dynos on the bridge never meet the FORWARD chains
  (``Documentation/networking/bridge.rst``; docker sets them the same way).

:meth:`Firewall.apply` turns each on and records the value it found in
:data:`SYSCTL_RECORD` before changing it, so a daemon that crashed, a later
``dynod teardown`` and the last of several instances all know what the host had.
:meth:`Firewall.remove` restores them when no other dynod instance still
forwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import structlog

from dynod.errors import FirewallError
from dynod.firewall.rules import FirewallPlan, WebPort, render, render6, render_web

log = structlog.get_logger("dynod.firewall")

# Runs argv with optional stdin text and returns stdout; raises
# subprocess.CalledProcessError on a non-zero exit.
Runner = Callable[[list[str], str | None], str]
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
# Host-wide, like the settings it records: shared by every instance, so the
# first to change a setting records the host's value and the last to go
# restores it, even across crashes.
SYSCTL_RECORD = Path("/run/dynod-sysctls.json")
BRIDGE_SYSCTLS = (
    Path("/proc/sys/net/bridge/bridge-nf-call-iptables"),
    Path("/proc/sys/net/bridge/bridge-nf-call-ip6tables"),
)
MAX_DUPLICATES = 8
# Any dynod instance's forward jump (chains are the upper-cased instance name).
_ANY_FORWARD_JUMP = re.compile(r"^-A FORWARD .*-j [A-Z][A-Z0-9]{0,7}-FWD$", re.M)
# (restore command, command) per address family.
_V4 = ("iptables-restore", "iptables")
_V6 = ("ip6tables-restore", "ip6tables")
Jump = tuple[str, str, list[str]]


def run(argv: list[str], stdin: str | None) -> str:
    """The default runner: the real command, stdout returned."""
    return subprocess.run(
        argv, input=stdin, capture_output=True, text=True, check=True
    ).stdout


class Firewall:
    """The host firewall rules of one dynod instance."""

    def __init__(
        self,
        plan: FirewallPlan,
        runner: Runner | None = None,
        ip_forward: Path = IP_FORWARD,
        bridge_sysctls: tuple[Path, ...] = BRIDGE_SYSCTLS,
        state_file: Path | None = None,
    ) -> None:
        self.plan = plan
        self.run = runner or run
        self.sysctls = (ip_forward, *bridge_sysctls)
        self.state_file = state_file
        # Web dynos the router may reach; kept by the last apply/allow_web.
        self.web: frozenset[WebPort] = frozenset()
        # Sysctl path -> the value found before any dynod changed it (kept
        # here when there is no state file).
        self._memory: dict[str, str] = {}

    def apply(self, web: Iterable[WebPort] | None = None) -> None:
        """(Re)write our chains and add any missing jumps; idempotent.

        ``web`` replaces the routed web dynos (None keeps the current ones).
        Raises :class:`FirewallError` when iptables refuses the rules or a
        kernel setting they need is missing.
        """
        started = time.monotonic()
        if web is not None:
            self.web = frozenset(web)

        # Our chains and the missing jumps: one restore per family.
        self._restore(_V4, render(self.plan, self.web), self.plan.jumps())
        self._restore(_V6, render6(self.plan), self.plan.jumps6())

        # Then forwarding and bridge filtering, never before the rules exist;
        # each old value is saved before it is changed.
        self._enable_sysctls()
        log.debug(
            "firewall_applied",
            instance=self.plan.instance,
            ms=round((time.monotonic() - started) * 1000, 1),
        )

    def allow_web(self, web: Iterable[WebPort]) -> None:
        """Let the router reach exactly these web dynos; a no-op if unchanged.

        Rewrites only ``<instance>-WEB``, in one transaction (a few ms).
        """
        wanted = frozenset(web)
        if wanted == self.web:
            return
        try:
            self.run(
                ["iptables-restore", "-w", "--noflush"], render_web(self.plan, wanted)
            )
        except subprocess.CalledProcessError as exc:
            raise self._refused(exc) from exc
        self.web = wanted

    def remove(self) -> None:
        """Remove our jumps and chains; whatever is already gone is fine."""
        # Jumps first: a chain that is still referenced cannot be deleted.
        for tool, jumps in ((_V4[1], self.plan.jumps()), (_V6[1], self.plan.jumps6())):
            for table, chain, spec in jumps:
                # A jump added twice by hand needs deleting twice; stop somewhere.
                for _ in range(MAX_DUPLICATES):
                    if not self._has(tool, table, chain, spec):
                        break
                    self._quiet([tool, "-w", "-t", table, "-D", chain, *spec])

        # Then the chains: all flushed before any is deleted (OUT jumps to WEB).
        p = self.plan
        chains = [
            (_V4[1], "filter", p.input_chain),
            (_V4[1], "filter", p.output_chain),
            (_V4[1], "filter", p.web_chain),
            (_V4[1], "filter", p.forward_chain),
            (_V4[1], "nat", p.postrouting_chain),
            (_V6[1], "filter", p.v6_chain),
        ]
        for op in ("-F", "-X"):
            for tool, table, chain in chains:
                self._quiet([tool, "-w", "-t", table, op, chain])
        self.web = frozenset()

        # Settings back as found, by the last instance to go: one that still
        # forwards needs them, and will restore them itself.
        others = _ANY_FORWARD_JUMP.search(self._quiet(["iptables", "-S", "FORWARD"]))
        if others:
            return
        for path, value in self._load().items():
            with contextlib.suppress(OSError):
                Path(path).write_text(value + "\n")
        self._memory = {}
        if self.state_file is not None:
            self.state_file.unlink(missing_ok=True)

    def _enable_sysctls(self) -> None:
        for path in self.sysctls:
            if not path.exists():
                raise FirewallError(
                    f"{path} does not exist, so the firewall could not keep dynos "
                    "apart; load the kernel module behind it (modprobe br_netfilter) "
                    "and start dynod again."
                )
            current = path.read_text().strip()
            if current == "1":
                continue
            # Record the old value durably before changing it; a value another
            # instance recorded first is the host's own and stays.
            record = self._load()
            record.setdefault(str(path), current)
            self._store(record)
            path.write_text("1\n")

    def _restore(self, tools: tuple[str, str], text: str, jumps: list[Jump]) -> None:
        restore, tool = tools
        for table, chain, spec in jumps:
            if self._has(tool, table, chain, spec):
                continue
            position = "-A" if chain == "POSTROUTING" else "-I"
            jump = f"{position} {chain} {' '.join(spec)}"
            # Each table's block ends with COMMIT: put the jump just before it.
            head, sep, tail = text.partition(f"*{table}\n")
            commit = tail.index("COMMIT\n")
            text = head + sep + tail[:commit] + jump + "\n" + tail[commit:]
        try:
            self.run([restore, "-w", "--noflush"], text)
        except subprocess.CalledProcessError as exc:
            raise self._refused(exc) from exc

    def _refused(self, exc: subprocess.CalledProcessError) -> FirewallError:
        return FirewallError(
            f"{exc.cmd[0]} rejected the rules of instance {self.plan.instance!r}: "
            f"{exc.stderr.strip() if exc.stderr else exc}. "
            "Check that the nft-backed iptables and ip6tables are installed."
        )

    def _load(self) -> dict[str, str]:
        if self.state_file is None:
            return dict(self._memory)
        try:
            saved = json.loads(self.state_file.read_text())["sysctls"]
        except (OSError, ValueError, KeyError, TypeError):
            return {}
        return {str(k): str(v) for k, v in saved.items()}

    def _store(self, record: dict[str, str]) -> None:
        if self.state_file is None:
            self._memory = dict(record)
            return
        tmp = self.state_file.with_name(f"{self.state_file.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"sysctls": record}))
        tmp.replace(self.state_file)

    def _has(self, tool: str, table: str, chain: str, spec: list[str]) -> bool:
        try:
            self.run([tool, "-w", "-t", table, "-C", chain, *spec], None)
        except subprocess.CalledProcessError:
            return False
        return True

    def _quiet(self, argv: list[str]) -> str:
        """Run argv; a failure (the rule or chain is absent) is not an error."""
        try:
            return self.run(argv, None)
        except subprocess.CalledProcessError:
            return ""
