"""The shipped buildpacks and compile.sh, run for real on this host.

compile.sh takes its directories from the environment, so these tests run it
against copies of the example and fixture apps in temp dirs, with a PATH that
holds only the host's /usr, as the stack does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from dynod.build.release_yaml import parse_release_yaml

REPO = Path(__file__).resolve().parents[3]
COMPILE_SH = REPO / "dynod" / "build" / "compile.sh"
BUILDPACKS = REPO / "buildpacks"
FIXTURES = REPO / "tests" / "fixtures" / "apps"
STACK_PATH = "/usr/bin:/bin"


@dataclass
class Run:
    status: int
    output: str
    app: Path
    out: Path

    @property
    def lines(self) -> list[str]:
        return self.output.splitlines()

    @property
    def process_types(self) -> dict[str, str]:
        return parse_release_yaml((self.out / "release.yml").read_text())


def compile_app(tmp_path: Path, source: Path, **env: str) -> Run:
    """Copy ``source`` to a temp build dir and run compile.sh against it."""
    app = tmp_path / "app"
    shutil.copytree(source, app, symlinks=True)
    (tmp_path / "env").mkdir(exist_ok=True)
    full_env = {
        "PATH": STACK_PATH,
        "HOME": str(app),
        "BUILD_DIR": str(app),
        "CACHE_DIR": str(tmp_path / "cache"),
        "ENV_DIR": str(tmp_path / "env"),
        "BUILDPACKS_DIR": str(BUILDPACKS),
        "OUTPUT_DIR": str(tmp_path / "out"),
        **env,
    }
    proc = subprocess.run(
        ["/bin/bash", str(COMPILE_SH)],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
        check=False,
    )
    return Run(proc.returncode, proc.stdout, app, tmp_path / "out")


def assert_heroku_style(run: Run) -> None:
    for line in run.lines:
        assert line.startswith(("-----> ", "       ", " !     ")), line


def test_python_example_app(tmp_path: Path) -> None:
    run = compile_app(tmp_path, REPO / "examples" / "python-app")
    assert run.status == 0, run.output
    assert run.lines[0] == "-----> Python app detected"
    assert "-----> No requirements to install" in run.lines
    assert_heroku_style(run)
    assert (run.out / "buildpack").read_text() == "python\n"
    assert run.process_types == {}

    # The venv exists where the app will run, on the stack's own Python.
    venv = run.app / ".heroku" / "python"
    prefix = subprocess.run(
        [venv / "bin" / "python", "-c", "import sys, json; print(sys.prefix)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert prefix == str(venv)


@pytest.mark.parametrize(
    ("memory", "preset", "expected"),
    [("512", "", "2"), ("1024", "", "4"), ("100", "", "1"), ("512", "7", "7")],
)
def test_python_profile_sets_web_concurrency(
    tmp_path: Path, memory: str, preset: str, expected: str
) -> None:
    run = compile_app(tmp_path, REPO / "examples" / "python-app")
    assert run.status == 0, run.output
    env = {"PATH": STACK_PATH, "MEMORY_AVAILABLE": memory}
    if preset:
        env["WEB_CONCURRENCY"] = preset
    # Sourced under `set -e`, as a strict launcher might.
    script = (
        "set -eu; . .profile.d/python.sh; echo $WEB_CONCURRENCY; command -v python3"
    )
    shown = subprocess.run(
        ["/bin/bash", "-c", script],
        cwd=run.app,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert shown == [expected, str(run.app / ".heroku/python/bin/python3")]


@pytest.mark.parametrize(
    ("name", "content"),
    [(".python-version", "3.11\n"), ("runtime.txt", "python-3.11.4\n")],
)
def test_python_version_the_stack_has(tmp_path: Path, name: str, content: str) -> None:
    src = tmp_path / "src"
    shutil.copytree(REPO / "examples" / "python-app", src)
    (src / name).write_text(content)
    run = compile_app(tmp_path / "b", src)
    assert run.status == 0, run.output
    assert f"in {name})" in run.lines[1]


def test_python_version_the_stack_lacks(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(REPO / "examples" / "python-app", src)
    (src / ".python-version").write_text("3.99.1\n")
    run = compile_app(tmp_path / "b", src)
    assert run.status == 1
    offered = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert (
        f" !     Python 3.99.1 (from .python-version) is not on this stack, which "
        f"offers: {offered}." in run.output
    )
    assert not (run.out / "buildpack").exists()


def test_python_requirements_from_pyproject_and_uv_lock(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\nversion = "1"\ndependencies = ["flask>=3"]\n'
    )
    (tmp_path / "uv.lock").write_text(
        'version = 1\n[[package]]\nname = "x"\nversion = "1"\n'
        'source = { virtual = "." }\n'
        '[[package]]\nname = "flask"\nversion = "3.0.3"\n'
        'source = { registry = "https://pypi.org/simple" }\n'
        '[[package]]\nname = "colorama"\nversion = "0.4.6"\n'
        'source = { registry = "https://pypi.org/simple" }\n'
    )
    req, con = tmp_path / "req", tmp_path / "con"
    subprocess.run(
        [
            "/usr/bin/python3",
            BUILDPACKS / "python/lib/requirements.py",
            tmp_path,
            req,
            con,
        ],
        check=True,
        capture_output=True,
    )
    assert req.read_text() == "flask>=3\n"
    assert con.read_text() == "flask==3.0.3\ncolorama==0.4.6\n"


def test_python_requirements_from_pipfile_lock(tmp_path: Path) -> None:
    (tmp_path / "Pipfile").write_text('[packages]\nrequests = "*"\n')
    (tmp_path / "Pipfile.lock").write_text(
        '{"default": {"requests": {"version": "==2.32.3"}}, "develop": {}}'
    )
    req, con = tmp_path / "req", tmp_path / "con"
    subprocess.run(
        [
            "/usr/bin/python3",
            BUILDPACKS / "python/lib/requirements.py",
            tmp_path,
            req,
            con,
        ],
        check=True,
        capture_output=True,
    )
    assert req.read_text() == "requests==2.32.3\n"


def test_node_app(tmp_path: Path) -> None:
    run = compile_app(tmp_path, FIXTURES / "node-app")
    assert run.status == 0, run.output
    assert run.lines[0] == "-----> Node.js app detected"
    assert_heroku_style(run)
    assert run.process_types == {"web": "npm start"}
    profile = (run.app / ".profile.d" / "nodejs.sh").read_text()
    assert f"{run.app}/node_modules/.bin" in profile


def test_static_site(tmp_path: Path) -> None:
    run = compile_app(tmp_path, FIXTURES / "static-site")
    assert run.status == 0, run.output
    assert run.lines[0] == "-----> Static app detected"
    assert run.process_types == {
        "web": "python3 -m http.server $PORT --bind 0.0.0.0 --directory public"
    }


def test_procfile_only_app(tmp_path: Path) -> None:
    run = compile_app(tmp_path, FIXTURES / "release-fails")
    assert run.status == 0, run.output
    assert run.lines[0] == "-----> Procfile app detected"
    assert (run.out / "buildpack").read_text() == "procfile\n"


def test_nothing_detected(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "main.go").write_text("package main\n")
    run = compile_app(tmp_path / "b", src)
    assert run.status == 1
    assert "No default language could be detected" in run.output
    for looks_for in ("requirements.txt", "package.json", "public/", "a Procfile"):
        assert looks_for in run.output


def test_forced_shipped_buildpack(tmp_path: Path) -> None:
    run = compile_app(tmp_path, REPO / "examples" / "python-app", BUILDPACK="procfile")
    assert run.status == 0, run.output
    assert run.lines[0] == "-----> Procfile app detected"
    assert not (run.app / ".heroku").exists()


def test_forced_buildpack_that_rejects_the_app(tmp_path: Path) -> None:
    run = compile_app(tmp_path, REPO / "examples" / "python-app", BUILDPACK="nodejs")
    assert run.status == 1
    assert "App not compatible with buildpack: nodejs" in run.output


def test_failing_custom_buildpack(tmp_path: Path) -> None:
    fixture = FIXTURES / "failing-buildpack"
    run = compile_app(tmp_path, fixture / "app", BUILDPACK=str(fixture / "buildpack"))
    assert run.status == 1
    assert run.lines[:3] == [
        "-----> Failing app detected",
        "-----> Compiling, badly",
        "       something went wrong",
    ]
    assert "bin/compile exited with status 1" in run.output
    assert not (run.out / "buildpack").exists()


def test_buildpacks_are_executable() -> None:
    for path in BUILDPACKS.glob("*/bin/*"):
        assert os.access(path, os.X_OK), path


def _tiny_wheel(directory: Path) -> Path:
    """A pure-Python wheel made by hand, so pip installs it without the network."""
    wheel = directory / "hello_dynod-1.0-py3-none-any.whl"
    info = "hello_dynod-1.0.dist-info"
    files = {
        "hello_dynod/__init__.py": "GREETING = 'hello from a wheel'\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: hello-dynod\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\n"
        "Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(wheel, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
        z.writestr(f"{info}/RECORD", record)
    return wheel


def test_python_installs_requirements_with_pip(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    wheel = _tiny_wheel(src)
    (src / "requirements.txt").write_text(f"./{wheel.name}\n")
    run = compile_app(tmp_path / "b", src)
    assert run.status == 0, run.output
    assert "-----> Installing requirements with pip" in run.lines
    assert_heroku_style(run)
    imported = subprocess.run(
        [
            run.app / ".heroku/python/bin/python",
            "-c",
            "import hello_dynod; print(hello_dynod.GREETING)",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert imported == "hello from a wheel\n"
