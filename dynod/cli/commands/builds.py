"""``deploy`` and the build history (``builds``, ``builds:output``, ``:cancel``)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import IO, Any

import click

from dynod.build.archive import pack_source
from dynod.cli.base import Failure, Session, command
from dynod.cli.output import Output, format_bytes, format_when, render_table


@command("deploy")
@click.argument("source", default=".", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--buildpack",
    "-b",
    metavar="NAME|PATH",
    help="Build with this buildpack: a shipped one's name or a directory.",
)
@click.option("--description", "-m", metavar="TEXT", help="Describe the release.")
def deploy(
    s: Session, source: Path, buildpack: str | None, description: str | None
) -> None:
    """Build SOURCE (a directory, default ., or a .tar.gz) and release it.

    A directory is packed without .git and without what .slugignore lists.
    The build output streams to stdout; the command exits 0 only when the
    build succeeded and its release went live.  With --json the output goes
    to stderr and the build's JSON to stdout.

    \b
    Examples:
      $ dynoctl deploy -a hello
      $ dynoctl deploy ./site --buildpack /srv/buildpacks/static -a hello
      $ dynoctl deploy app.tar.gz -a hello
    """
    # A buildpack is a shipped one's name or a directory on the host, which the
    # daemon takes as an absolute path.
    if buildpack and "/" in buildpack and not buildpack.startswith("/"):
        buildpack = str(Path(buildpack).resolve())

    # Pack a directory into a temporary tarball; a tarball goes as it is.
    with tempfile.TemporaryFile() as packed:
        if source.is_dir():
            pack = Meter(s.out, "Packing source")
            pack_source(source, packed, lambda done: pack(done, 0))
            pack.finish(packed.tell())
            body: IO[bytes] = packed
        else:
            body = source.open("rb")
        size = body.seek(0, 2)
        body.seek(0)

        # Upload it; the API answers once the build is queued.
        upload = Meter(s.out, "Uploading source")
        with body:
            build = s.client.upload(
                s.path("builds"),
                body,
                size,
                params={"buildpack": buildpack, "description": description},
                progress=upload,
            )
        upload.finish(size)

    # Follow the build and its rollout to the end of their output.
    follow(s, build, err=s.out.as_json)
    build = s.client.request("GET", s.path("builds", build["id"]))
    if s.out.as_json:
        s.out.json(build)
    finish_deploy(s, build)


def finish_deploy(s: Session, build: dict[str, Any]) -> None:
    """Print how a deploy ended, or raise Failure if it did not go live."""
    status, bid = build.get("status"), build["id"]
    if status == "pending":
        raise Failure(
            f"The output of build {bid} ended while it is still running; follow it "
            f"with `dynoctl builds:output {bid} -a {s.app}`."
        )
    if status != "succeeded" or not build.get("release"):
        raise Failure(
            f"Build {bid} {status}; the output above says why. The app still runs "
            "its previous release."
        )
    version = build["release"]["version"]
    release = s.client.request("GET", s.path("releases", str(version)))
    if release.get("status") == "failed":
        raise Failure(
            f"Release v{version} failed in its release phase and did not go live; "
            f"see `dynoctl releases:output v{version} -a {s.app}`."
        )
    s.out.info(f"Released v{version}")


class Meter:
    """Progress ``LABEL... DONE / TOTAL`` on a terminal, redrawn in place."""

    def __init__(self, out: Output, label: str) -> None:
        self.out = out
        self.label = label
        self.live = not out.quiet and sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        if self.live:
            of = f" / {format_bytes(total)}" if total else ""
            click.echo(
                f"\r{self.label}... {format_bytes(done)}{of}", nl=False, err=True
            )

    def finish(self, total: int) -> None:
        """End the progress line with the final figure."""
        start = "\r" if self.live else ""
        self.out.info(f"{start}{self.label}... {format_bytes(total)}, done")


def follow(s: Session, build: dict[str, Any], *, err: bool = False) -> None:
    """Copy a build's output stream to stdout (stderr with ``err``) as it arrives."""
    # Text printed before must come out first.
    sys.stdout.flush()
    sys.stderr.flush()
    sink = sys.stderr.buffer if err else sys.stdout.buffer
    for chunk in s.client.stream(build["output_stream_url"]):
        sink.write(chunk)
        sink.flush()


def latest(s: Session, pending_only: bool = False) -> dict[str, Any]:
    """The app's newest build (newest pending one with ``pending_only``)."""
    builds: list[dict[str, Any]] = s.client.request("GET", s.path("builds"))
    if pending_only:
        builds = [b for b in builds if b.get("status") == "pending"]
    if not builds:
        what = "running" if pending_only else "at all"
        raise Failure(f"{s.mark} has no build {what}; deploy with `dynoctl deploy`.")
    return newest_first(builds)[0]


def newest_first(builds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Times are to the second; builds made within one keep the API's order,
    # oldest first, so reversing it breaks the tie.
    order = sorted(
        enumerate(builds), key=lambda ib: (str(ib[1].get("created_at")), ib[0])
    )
    return [b for _, b in reversed(order)]


@command("builds")
def builds(s: Session) -> None:
    """List an app's builds, newest first.

    \b
    Example:
      $ dynoctl builds -a hello
      === hello Builds
      ID        Status     Release  By    When
    """
    listed: list[dict[str, Any]] = s.client.request("GET", s.path("builds"))
    listed = newest_first(listed)
    if s.out.as_json:
        s.out.json(listed)
        return
    rows = [
        [
            b["id"],
            b.get("status", ""),
            f"v{b['release']['version']}" if b.get("release") else "",
            (b.get("user") or {}).get("email", ""),
            format_when(b.get("created_at")),
        ]
        for b in listed
    ]
    s.out.heading(f"{s.app} Builds")
    s.out.lines(render_table(["ID", "Status", "Release", "By", "When"], rows))


@command("builds:output")
@click.argument("build_id", metavar="[ID]", required=False)
def builds_output(s: Session, build_id: str | None) -> None:
    """Print a build's output (the latest build's by default).

    A build still running is followed until it ends.

    \b
    Example:
      $ dynoctl builds:output -a hello
    """
    if build_id is None:
        build = latest(s)
    else:
        build = s.client.request("GET", s.path("builds", build_id))
    follow(s, build)


@command("builds:cancel")
@click.argument("build_id", metavar="[ID]", required=False)
def builds_cancel(s: Session, build_id: str | None) -> None:
    """Cancel a running build (the latest running one by default).

    \b
    Example:
      $ dynoctl builds:cancel -a hello
      Cancelling build 01J... of ⬢ hello... done
    """
    bid = build_id or latest(s, pending_only=True)["id"]
    with s.out.action(f"Cancelling build {bid} of {s.mark}"):
        result = s.client.request("DELETE", s.path("builds", bid))
    if s.out.as_json:
        s.out.json(result)


COMMANDS = [deploy, builds, builds_output, builds_cancel]
