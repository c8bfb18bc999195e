"""``releases``, ``releases:info``, ``releases:output`` and ``rollback``."""

from __future__ import annotations

import sys
from typing import Any

import click

from dynod.cli.base import Failure, Session, command
from dynod.cli.output import format_when, render_pairs, render_table
from dynod.cli.parsing import parse_version

# How far back ``rollback`` looks for a release to return to.
_ROLLBACK_WINDOW = 100


def change(release: dict[str, Any]) -> str:
    """The Change column: the description, with the status unless it succeeded."""
    text = str(release.get("description", ""))
    status = release.get("status")
    if status == "failed":
        return text + " " + click.style("(release command failed)", fg="red")
    if status == "pending":
        return text + " " + click.style("(pending)", fg="yellow")
    return text


@command("releases")
@click.option(
    "-n", "--num", default=15, show_default=True, type=click.IntRange(min=1),
    help="How many releases to show.",
)  # fmt: skip
def releases(s: Session, num: int) -> None:
    """List an app's releases, newest first.

    Every deploy, config change and rollback makes a release.

    \b
    Example:
      $ dynoctl releases -a hello
      === hello Releases - Current: v3
      Rel  Change                  By    When
      ───  ──────────────────────  ────  ──────────────────────────────────────
      v3   Set WELCOME config var  root  2026/12/03 18:12:23 +0000 (~ 3m ago)
    """
    listed: list[dict[str, Any]] = s.client.request(
        "GET", s.path("releases"), params={"limit": num}
    )
    listed.reverse()
    if s.out.as_json:
        s.out.json(listed)
        return
    if not listed:
        s.out.info(f"{s.mark} has no releases yet; deploy with `dynoctl deploy`.")
        return
    current = next((r for r in listed if r.get("current")), None)
    title = f"{s.app} Releases"
    if current:
        title += f" - Current: v{current['version']}"
    rows = [
        [
            f"v{r['version']}",
            change(r),
            (r.get("user") or {}).get("email", ""),
            format_when(r.get("created_at")),
        ]
        for r in listed
    ]
    s.out.heading(title)
    s.out.lines(render_table(["Rel", "Change", "By", "When"], rows))


@command("releases:info")
@click.argument("release", metavar="vN")
def releases_info(s: Session, release: str) -> None:
    """Show one release.

    \b
    Example:
      $ dynoctl releases:info v3 -a hello
    """
    version = parse_version(release)
    rel = s.client.request("GET", s.path("releases", str(version)))
    if s.out.as_json:
        s.out.json(rel)
        return
    s.out.heading(f"Release v{rel['version']}")
    s.out.lines(
        render_pairs(
            [
                ("Change", change(rel)),
                ("By", (rel.get("user") or {}).get("email", "")),
                ("When", format_when(rel.get("created_at"))),
                ("Status", str(rel.get("status", ""))),
                ("Current", "yes" if rel.get("current") else "no"),
                ("Slug", (rel.get("slug") or {}).get("id", "none")),
                ("ID", str(rel.get("id", ""))),
            ]
        )
    )


@command("releases:output")
@click.argument("release", metavar="[vN]", required=False)
def releases_output(s: Session, release: str | None) -> None:
    """Print the output of a release's release phase (the latest release's by default).

    \b
    Example:
      $ dynoctl releases:output v4 -a hello
    """
    if release is None:
        newest = s.client.request("GET", s.path("releases"), params={"limit": 1})
        if not newest:
            raise Failure(
                f"{s.mark} has no releases yet; deploy with `dynoctl deploy`."
            )
        version = int(newest[-1]["version"])
    else:
        version = parse_version(release)
    sys.stdout.flush()
    for chunk in s.client.stream(s.path("releases", str(version), "output")):
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()


def rollback_target(listed: list[dict[str, Any]], app: str) -> int:
    """The version ``rollback`` returns to by default.

    That is the newest successful release older than the current one: a failed
    release never ran, so returning to it would fail again.
    """
    current = next((r for r in listed if r.get("current")), None)
    if current is None:
        raise Failure(f"⬢ {app} has no current release to roll back from.")
    older = [
        r
        for r in listed
        if r["version"] < current["version"] and r.get("status") == "succeeded"
    ]
    if not older:
        raise Failure(
            f"⬢ {app} has no successful release before v{current['version']} "
            "to roll back to."
        )
    return int(max(older, key=lambda r: int(r["version"]))["version"])


@command("rollback")
@click.argument("release", metavar="[vN]", required=False)
def rollback(s: Session, release: str | None) -> None:
    """Make a new release with the code and config of vN and roll it out.

    Without vN, returns to the release before the current one.

    \b
    Examples:
      $ dynoctl rollback -a hello
      Rolling back ⬢ hello to v2... done, v4
      $ dynoctl rollback v1 -a hello
    """
    if release is None:
        listed = s.client.request(
            "GET", s.path("releases"), params={"limit": _ROLLBACK_WINDOW}
        )
        version = rollback_target(listed, s.app)
    else:
        version = parse_version(release)
    with s.out.action(f"Rolling back {s.mark} to v{version}") as step:
        made = s.client.request("POST", s.path("releases"), {"release": str(version)})
        step.suffix = f"v{made['version']}"
    if s.out.as_json:
        s.out.json(made)
        return
    s.out.info(f"Undo with `dynoctl rollback v{int(made['version']) - 1} -a {s.app}`.")


COMMANDS = [releases, releases_info, releases_output, rollback]
