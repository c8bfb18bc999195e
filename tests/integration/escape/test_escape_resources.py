"""Exhausting a dyno's resources hurts only that dyno.

While one attacker dyno runs a fork bomb, a memory bomb, a disk filler or a
CPU hog, the victim app keeps answering through the router: the typical request
stays fast (a loopback request takes a millisecond or two) and none stalls.
The benchmark bench_isolation_neighbour.py measures the same with percentiles.
"""

from __future__ import annotations

import statistics
import time

import pytest
from escape_support import World, read_result

pytestmark = pytest.mark.integration

# While the bomb runs, a neighbour's median request stays under the first
# bound and none takes longer than the second.
MEDIAN_LATENCY = 0.05
MAX_LATENCY = 1.0


def victim_latencies(world: World, seconds: float) -> list[float]:
    """Request the victim through the router for ``seconds``; each latency."""
    took = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.monotonic()
        status, body = world.daemon.get(world.victim, "/", timeout=5)
        took.append(time.monotonic() - started)
        assert status == 200 and "Hello from web.1 of victim" in body
        time.sleep(0.02)
    assert statistics.median(took) < MEDIAN_LATENCY
    assert max(took) < MAX_LATENCY
    return took


def test_fork_bomb_stops_at_the_pids_limit(world: World) -> None:
    proc = world.start_inside(
        "count, error = 0, None\n"
        "while True:\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError as exc:\n"
        "        error = name(exc.errno)\n"
        "        break\n"
        "    if pid == 0:\n"
        "        time.sleep(6)\n"
        "        os._exit(0)\n"
        "    count += 1\n"
        "say([count, error])\n"
        "time.sleep(4)\n"
    )
    try:
        count, error = read_result(proc)
        victim_latencies(world, 2.0)
    finally:
        proc.kill()
        proc.communicate()
    # standard-1x: 256 pids, some already taken by tini, bash and python.
    assert error == "EAGAIN" and 200 < count < 256


def test_memory_bomb_is_killed_alone(world: World) -> None:
    proc = world.start_inside(
        "chunks = []\n"
        "say('started')\n"
        "while True:\n"
        "    chunks.append(bytearray(16 * 1024 * 1024))\n"
    )
    try:
        assert read_result(proc) == "started"
        victim_latencies(world, 1.5)
        proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.communicate()
    # The kernel's OOM killer, inside the dyno's memory cgroup.
    assert proc.returncode == 137


def test_disk_filler_gets_enospc_alone(world: World) -> None:
    # performance-m: 2.5 GB of memory, so the 1 GB ephemeral disk fills first.
    result = world.inside(
        "written = 0\n"
        "block = b'x' * (8 * 1024 * 1024)\n"
        "try:\n"
        "    with open('/tmp/fill', 'wb') as f:\n"
        "        while True:\n"
        "            f.write(block)\n"
        "            f.flush()\n"
        "            written += len(block)\n"
        "except OSError as exc:\n"
        "    result = [name(exc.errno), written]\n",
        size="performance-m",
    )
    error, written = result
    assert error == "ENOSPC"
    assert 512 * 1024 * 1024 < written <= 1024 * 1024 * 1024
    status, _ = world.daemon.get(world.victim, "/")
    assert status == 200


def test_cpu_hog_leaves_the_neighbour_its_latency(world: World) -> None:
    idle = victim_latencies(world, 1.0)
    proc = world.start_inside(
        "for _ in range(7):\n"
        "    if os.fork() == 0:\n"
        "        end = time.monotonic() + 5\n"
        "        while time.monotonic() < end:\n"
        "            pass\n"
        "        os._exit(0)\n"
        "say('hogging')\n"
        "time.sleep(5)\n"
    )
    try:
        assert read_result(proc) == "hogging"
        busy = victim_latencies(world, 2.5)
    finally:
        proc.kill()
        proc.communicate()
    print(
        f"\nneighbour latency: idle median {statistics.median(idle) * 1000:.1f} ms,"
        f" under a CPU hog median {statistics.median(busy) * 1000:.1f} ms,"
        f" max {max(busy) * 1000:.1f} ms"
    )
