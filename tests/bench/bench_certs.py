"""Time to issue a certificate from pebble, through dynod and bare.

One run, one pebble (with pebble-challtestsrv) on loopback, one real dynod:

1. anchor: the ``acme`` library driven directly (:class:`AcmeIssuer`, no
   daemon logic), with the HTTP-01 tokens answered by the same router;
2. dynod: from ``certs:auto:enable`` (or a new domain) to the domain's
   ``cert issued`` status, then to the first TLS handshake that shows the
   new certificate.

Prints the median of ``--rounds`` issuances of each.  Needs root (a real
daemon); everything is torn down at the end, also on failure.

    .venv/bin/python tests/bench/bench_certs.py [--rounds N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from dynod.certs.acme import AcmeIssuer  # noqa: E402
from dynod.certs.challenges import ChallengeTokens  # noqa: E402
from tests.integration.certs.certs_pebble import pebble  # noqa: E402
from tests.integration.certs.certs_tls import peer_names  # noqa: E402
from tests.support.daemon import make_daemon  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="dynod-bench-certs-"))
    stacks = Path(tempfile.mkdtemp(prefix="dynod-bench-stacks-"))
    daemon = make_daemon(base, stacks)
    https_port = int(daemon.flags[daemon.flags.index("--https-port") + 1])
    try:
        with pebble(base / "pebble", daemon.http_port) as ca:
            (base / "none.toml").write_text(
                f'acme_directory = "{ca.directory}"\nacme_ca_file = "{ca.ca_file}"\n'
            )
            daemon.start()
            daemon.ctl("apps:create", "bench")

            # Anchor: the library alone, tokens served by the same router.
            issuer = AcmeIssuer(
                ca.directory, base / "anchor-acme", ChallengeTokens(daemon.run_dir),
                ca.ca_file,
            )  # fmt: skip
            bare = []
            for i in range(args.rounds):
                began = time.perf_counter()
                issuer.issue([f"bare{i}.bench.test"], lambda step, msg: None)
                bare.append(time.perf_counter() - began)

            # dynod: enable once, then one new domain per round.
            issued, served = [], []
            for i in range(args.rounds):
                host = f"www{i}.bench.test"
                began = time.perf_counter()
                daemon.ctl("domains:add", host, "-a", "bench")
                if i == 0:
                    daemon.ctl("certs:auto:enable", "-a", "bench")
                while True:
                    domains = daemon.ctl_json("certs:auto", "-a", "bench")["domains"]
                    if all(d["acm_status"] == "cert issued" for d in domains):
                        break
                    if time.perf_counter() - began > 120:
                        raise SystemExit(f"no certificate for {host}: {domains}")
                    time.sleep(0.02)
                issued.append(time.perf_counter() - began)
                while host not in peer_names(https_port, host):
                    time.sleep(0.01)
                served.append(time.perf_counter() - began)
    finally:
        daemon.destroy()
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(stacks, ignore_errors=True)

    def med(xs: list[float]) -> str:
        return f"{statistics.median(xs) * 1000:7.0f} ms"

    print(f"rounds: {args.rounds} (medians)")
    print(f"anchor: acme library alone, 1 name           {med(bare)}")
    print(f"dynod:  domains:add → 'cert issued' (all names) {med(issued)}")
    print(f"dynod:  domains:add → served over TLS          {med(served)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
