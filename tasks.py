#!/usr/bin/env python3
"""Set up the project and run it: ``python3 tasks.py demo``, ``test`` or ``bench``.

Needs only python3 (3.11+). Creates ``.venv`` beside this file, installs
flowledger with its development extras into it (again only when
pyproject.toml changed), then runs the demo or the whole check suite:
ruff (lint and format), mypy strict (package, tests, benchmarks, examples,
scripts), and pytest with branch coverage (the import-linter contracts run as a test).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
STAMP = VENV / ".flowledger-installed"


def run(*args: str | os.PathLike[str], env: dict[str, str] | None = None) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    done = subprocess.run([str(a) for a in args], cwd=ROOT, env=env)
    if done.returncode != 0:
        sys.exit(done.returncode)


def setup() -> None:
    """Create the virtual environment and install the project into it."""
    if sys.version_info < (3, 11):  # noqa: UP036  (this script runs before the venv exists)
        sys.exit(f"flowledger needs Python 3.11 or newer; this is {sys.version.split()[0]}.")
    if not PY.exists():
        print(f"creating {VENV.name}/", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == want:
        return
    run(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(PY, "-m", "pip", "install", "--quiet", "-e", ".[dev]")
    STAMP.write_text(want)


CHROMIUM = Path("/usr/bin/chromium")


def browser() -> None:
    """Install Debian's Chromium for the viewer's browser tests, when root on a machine without it."""
    if CHROMIUM.exists() or not shutil.which("apt-get") or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    print("installing chromium for the browser tests", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        if subprocess.run(step, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            print("could not install chromium: the browser tests will say why they skip", flush=True)
            return


REDIS_SERVER = "redis-server"


def redis_server() -> None:
    """Install Debian's redis-server for the Celery tests (adapter and executor), when root and it is missing."""
    if shutil.which(REDIS_SERVER) or not shutil.which("apt-get") or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    print("installing redis-server for the Celery adapter's and executor's tests", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "redis-server"]):
        if subprocess.run(step, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            print("could not install redis-server: the Celery tests will say why they skip", flush=True)
            return


def postgres() -> dict[str, str]:
    """Install Debian's PostgreSQL server for the PostgreSQL engine's tests, when root and it is missing.

    Returns the environment that makes a missing or broken PostgreSQL fail those tests instead of skipping them.
    """
    found = bool(shutil.which("pg_config")) or any(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found and shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        print("installing postgresql for the PostgreSQL engine's tests", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for step in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "postgresql"]):
            if subprocess.run(step, env=env, stdout=subprocess.DEVNULL).returncode != 0:
                print("could not install postgresql: the PostgreSQL tests will fail and say why", flush=True)
                break
    return {"FLOWLEDGER_REQUIRE_POSTGRES": "1"}


PHOENIX_VENV = ROOT / ".venv-phoenix"
PHOENIX_REQUIREMENT = "arize-phoenix==20.26.1"


def phoenix() -> dict[str, str]:
    """Install Arize Phoenix (a real OTLP backend for the interop tests) into a venv of its own.

    Kept apart from the project's venv: it brings about 120 packages. Returns
    the environment that points the tests at it (empty if it could not be had).
    """
    python = PHOENIX_VENV / BIN.name / "python"
    stamp = PHOENIX_VENV / ".installed"
    if not (stamp.exists() and stamp.read_text().strip() == PHOENIX_REQUIREMENT):
        print(f"installing {PHOENIX_REQUIREMENT} into {PHOENIX_VENV.name}/ for the OTLP interop tests", flush=True)
        if not python.exists():
            venv.EnvBuilder(with_pip=True).create(PHOENIX_VENV)
        done = subprocess.run([python, "-m", "pip", "install", "--quiet", PHOENIX_REQUIREMENT], cwd=ROOT)
        if done.returncode != 0:
            print("could not install Phoenix: its interop tests will say why they skip", flush=True)
            return {}
        stamp.write_text(PHOENIX_REQUIREMENT)
    return {"FLOWLEDGER_PHOENIX_PYTHON": str(python)}


def test(extra: list[str]) -> None:
    """Lint, type-check and run every test (slow ones included)."""
    browser()
    redis_server()
    env = {**os.environ, **phoenix(), **postgres()}
    run(PY, "-m", "ruff", "check", "src", "tests", "benchmarks", "examples", "scripts", "tasks.py")
    run(PY, "-m", "ruff", "format", "--check", "src", "tests", "benchmarks", "examples", "scripts", "tasks.py")
    run(PY, "-m", "mypy")
    run(PY, "-m", "pytest", "--cov", "--cov-report=term", *extra, env=env)


def demo() -> None:
    """Run the demo: a receiver, a generated workflow run against it, and where to look."""
    run(PY, str(ROOT / "examples" / "demo.py"))


BENCHMARKS = (
    "sdk_overhead.py",
    "ingest.py",
    "ingest_path.py",
    "codegen.py",
    "query_runs.py",
    "query_context.py",
    "purge.py",
    "integrity.py",
    "resume.py",
    "search.py",
    "otlp_grpc.py",
    "stats.py",
    "node_records.py",
)


def bench() -> None:
    """Run every benchmark; each prints its figures next to its reference."""
    names = BENCHMARKS + (("executors.py",) if shutil.which("redis-server") else ())  # it needs a Redis server
    if shutil.which("pg_config") or any(Path("/usr/lib/postgresql").glob("*/bin/initdb")):  # a PostgreSQL server
        names += ("migrate.py",)
    for name in names:
        print(f"\n### benchmarks/{name}", flush=True)
        run(PY, str(ROOT / "benchmarks" / name))


def faults() -> None:
    """Run the fault suite at its long scale and write RELIABILITY.md from that run."""
    run(PY, "-m", "tests.faults.report", "--scale", "long", "-o", ROOT / "RELIABILITY.md")


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in {"demo", "test", "bench", "faults", "setup"}:
        sys.exit("usage: python3 tasks.py demo | test [pytest args] | bench | faults | setup")
    setup()
    command = sys.argv[1]
    if command == "test":
        test(sys.argv[2:])
    elif command == "demo":
        demo()
    elif command == "bench":
        bench()
    elif command == "faults":
        faults()


if __name__ == "__main__":
    main()
