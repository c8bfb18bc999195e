"""Applying the rules to the host with the nft-backed ``iptables`` tools.

``iptables-restore --noflush`` replaces our chains atomically (per table) and
touches nothing else; the jumps from the built-in chains are added only when
``iptables -C`` does not find them, so applying twice changes nothing.  The rules
stay visible to the host's ``iptables -S``.  (python-iptables would drive the
legacy backend instead, whose rules ``iptables -S`` does not show.)

Forwarding must be on for dynos to reach the outside; :meth:`Firewall.apply`
turns ``net.ipv4.ip_forward`` on and :meth:`Firewall.remove` turns it back off
when this object turned it on and no other dynod instance still forwards.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from dynod.errors import FirewallError
from dynod.firewall.rules import FirewallPlan, render

log = structlog.get_logger("dynod.firewall")

# Runs argv with optional stdin text and returns stdout; raises
# subprocess.CalledProcessError on a non-zero exit.
Runner = Callable[[list[str], str | None], str]
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
MAX_DUPLICATES = 8
# Any dynod instance's forward jump (instance names are [a-z][a-z0-9]{0,7}).
_ANY_FORWARD_JUMP = re.compile(r"^-A FORWARD .*-j [a-z][a-z0-9]{0,7}-FWD$", re.M)


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
    ) -> None:
        self.plan = plan
        self.run = runner or run
        self.ip_forward = ip_forward
        # The ip_forward value found before apply() changed it, if it did.
        self._old_forward: str | None = None

    def apply(self) -> None:
        """(Re)write our chains and add any missing jumps; idempotent.

        Raises :class:`FirewallError` when iptables refuses the rules.
        """
        started = time.monotonic()

        # Our chains, and the jumps not there yet, in one restore per table.
        missing = [j for j in self.plan.jumps() if not self._has(*j)]
        text = render(self.plan)
        for table, chain, spec in missing:
            position = "-A" if chain == "POSTROUTING" else "-I"
            jump = f"{position} {chain} {' '.join(spec)}"
            # Each table's block ends with COMMIT: put the jump just before it.
            head, sep, tail = text.partition(f"*{table}\n")
            commit = tail.index("COMMIT\n")
            text = head + sep + tail[:commit] + jump + "\n" + tail[commit:]
        try:
            self.run(["iptables-restore", "-w", "--noflush"], text)
        except subprocess.CalledProcessError as exc:
            raise FirewallError(
                f"iptables-restore rejected the rules of instance "
                f"{self.plan.instance!r}: {exc.stderr.strip() if exc.stderr else exc}. "
                "Check that the nft-backed iptables is installed."
            ) from exc

        # Forwarding on, remembering what it was so remove() can undo it.
        current = self.ip_forward.read_text().strip()
        if current != "1":
            self._old_forward = self._old_forward or current
            self.ip_forward.write_text("1\n")
        log.debug(
            "firewall_applied",
            instance=self.plan.instance,
            ms=round((time.monotonic() - started) * 1000, 1),
        )

    def remove(self) -> None:
        """Remove our jumps and chains; whatever is already gone is fine."""
        # Jumps first: a chain that is still referenced cannot be deleted.
        for table, chain, spec in self.plan.jumps():
            # A jump added twice by hand needs deleting twice; stop somewhere.
            for _ in range(MAX_DUPLICATES):
                if not self._has(table, chain, spec):
                    break
                self._quiet(["iptables", "-w", "-t", table, "-D", chain, *spec])

        # Then the chains themselves.
        for table, chain in (
            ("filter", self.plan.input_chain),
            ("filter", self.plan.forward_chain),
            ("nat", self.plan.postrouting_chain),
        ):
            self._quiet(["iptables", "-w", "-t", table, "-F", chain])
            self._quiet(["iptables", "-w", "-t", table, "-X", chain])

        # Forwarding back off, unless another instance still needs it.
        if self._old_forward is not None:
            others = _ANY_FORWARD_JUMP.search(
                self._quiet(["iptables", "-S", "FORWARD"])
            )
            if not others:
                self.ip_forward.write_text(self._old_forward + "\n")
            self._old_forward = None

    def _has(self, table: str, chain: str, spec: list[str]) -> bool:
        try:
            self.run(["iptables", "-w", "-t", table, "-C", chain, *spec], None)
        except subprocess.CalledProcessError:
            return False
        return True

    def _quiet(self, argv: list[str]) -> str:
        """Run argv; a failure (the rule or chain is absent) is not an error."""
        try:
            return self.run(argv, None)
        except subprocess.CalledProcessError:
            return ""
