"""Dyno start with full isolation, without the seccomp filter, and runc.

Run as root: ``.venv/bin/python tests/bench/bench_isolation_start.py [N]``.

Starts N dynos (default 40) of each variant, interleaved so that noise from
neighbours hits both alike, and measures ``agent.start()`` to the command's
first line.  "full" is what every dyno gets (masked /proc, empty bounding set,
no_new_privs, rlimits, seccomp); "no seccomp" leaves only the filter out, so
the difference is the filter's cost.  The launcher's own marks give the cost
of the privilege drop (``b_creds``) and of building the root with its /proc
masks (``b_root``).  runc on the same rootfs, same command, is the anchor.
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_dyno_start import MARKER, Listener, bench_runc, p95

from dynod.config import Config
from dynod.runtime.local import LocalAgent
from dynod.runtime.spec import MB, SIZES, DynoKind, DynoSpec
from dynod.runtime.stack import ensure_default_stack

VARIANTS = {"full": True, "no seccomp": False}


async def bench(
    rootfs: Path, slug: Path, runs: int
) -> dict[str, list[dict[str, float]]]:
    instance = "db" + secrets.token_hex(3)[:5]
    run_dir = Path(tempfile.mkdtemp(prefix="dynod-bench-"))
    listener = Listener()
    config = Config(
        run_dir=run_dir,
        instance=instance,
        dyno_subnet=ipaddress.IPv4Network("10.250.1.0/24"),
    )
    agent = LocalAgent(config, listener)
    results: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    await agent.open()
    try:
        for i in range(runs + 3):
            for variant, seccomp in VARIANTS.items():
                spec = DynoSpec(
                    dyno_id=f"b{i}-{seccomp}",
                    app="bench",
                    name=f"web.{i}",
                    kind=DynoKind.FORMATION,
                    argv=("echo", MARKER.decode()),
                    env={"HOME": "/app"},
                    size=SIZES["standard-1x"],
                    uid=240001,
                    gid=240001,
                    stack_dir=rootfs,
                    slug_dir=slug,
                    ephemeral_bytes=64 * MB,
                    seccomp=seccomp,
                )
                listener.exited[spec.dyno_id] = asyncio.Event()
                began = time.monotonic()
                await agent.start(spec)
                await listener.exited[spec.dyno_id].wait()
                if i < 3:
                    continue  # warm-up
                m = dict(agent.last_start_marks)
                m["start"], m["marker"] = began, listener.seen[spec.dyno_id]
                results[variant].append(m)
    finally:
        await agent.destroy()
        shutil.rmtree(run_dir)
    return results


def figures(values: list[float]) -> str:
    return f"median {statistics.median(values):6.2f} ms   p95 {p95(values):6.2f} ms"


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    stacks = Path(tempfile.mkdtemp(prefix="dynod-bench-stacks-"))
    slug = Path(tempfile.mkdtemp(prefix="dynod-bench-slug-"))
    (slug / "app").mkdir()
    try:
        rootfs = ensure_default_stack(stacks).rootfs
        results = asyncio.run(bench(rootfs, slug, runs))
        runc_marker, _ = bench_runc(rootfs, runs)
    finally:
        shutil.rmtree(stacks)
        shutil.rmtree(slug)

    print(f"dyno start, {runs} runs each (start() call -> command's first line)")
    for variant, marks in results.items():
        totals = [(m["marker"] - m["start"]) * 1000 for m in marks]
        print(f"  dynod, {variant:<10}: {figures(totals)}")
    print(f"  runc             : {figures(runc_marker)}   (same rootfs and command)")
    print()
    print("the isolation steps inside the launcher (median per start)")
    for variant, marks in results.items():
        root = [(m["b_root"] - m["b_forked"]) * 1000 for m in marks]
        creds = [(m["b_creds"] - m["b_pivot"]) * 1000 for m in marks]
        print(
            f"  {variant:<10}: root with /proc masks {statistics.median(root):5.2f} ms,"
            f" privilege drop {statistics.median(creds):5.2f} ms"
        )


if __name__ == "__main__":
    main()
