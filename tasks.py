#!/usr/bin/env python3
"""Set up the project and run it: ``python3 tasks.py demo``, ``test`` or ``bench [--quick]``.

Needs only python3 (3.11+). Creates ``.venv`` beside this file, installs
flowledger with its development extras into it (again only when
pyproject.toml changed), then runs the demo or the whole check suite:
ruff (lint and format), mypy strict (package, tests, benchmarks, examples,
scripts), and pytest with branch coverage (the import-linter contracts run as a test).
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
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
    "sdk_instructions.py",
    "peers.py",
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
    "runtime.py",
)


BENCH_PAGE = ROOT / "docs" / "benchmarks.md"
QUICK_ARGS: dict[str, tuple[str, ...]] = {
    "sdk_instructions.py": ("--calls", "300"),
    "peers.py": ("--runs", "1", "--rounds", "5"),
    "ingest.py": ("--events", "20000"),
    "ingest_path.py": ("--runs", "1000", "--repeat", "1"),
    "query_runs.py": ("--runs", "100000", "--repeat", "3"),
    "query_context.py": ("--runs", "100000", "--repeat", "3"),
    "purge.py": ("--runs", "20000"),
    "integrity.py": ("--runs", "20000", "--repeat", "1"),
    "resume.py": ("--repeats", "50"),
    "search.py": ("--runs", "100000", "--repeat", "5"),
    "otlp_grpc.py": ("--batches", "50", "--repeat", "3"),
    "stats.py": ("--runs", "100000", "--repeat", "5"),
    "executors.py": ("--runs", "10", "--fanout", "200", "--rounds", "1"),
}
"""``bench --quick``: smaller scales for the benchmarks whose full run takes long (the page says so)."""


def bench(args: list[str]) -> None:
    """Run every benchmark, each beside its reference, and write docs/benchmarks.md from their output.

    ``--quick`` runs the long ones at a smaller scale (QUICK_ARGS); the page
    states the scale. Each benchmark's output is kept as it printed it.
    """
    quick = "--quick" in args
    load_before = _load()
    names = BENCHMARKS + (("executors.py",) if shutil.which("redis-server") else ())  # it needs a Redis server
    if shutil.which("pg_config") or any(Path("/usr/lib/postgresql").glob("*/bin/initdb")):  # a PostgreSQL server
        names += ("migrate.py",)
    sections: list[tuple[str, list[str], float, int, str]] = []
    for name in names:
        command = [str(PY), str(ROOT / "benchmarks" / name), *(QUICK_ARGS.get(name, ()) if quick else ())]
        print(f"\n### benchmarks/{name}", flush=True)
        started = time.monotonic()
        with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
            assert proc.stdout is not None
            lines = []
            for line in proc.stdout:
                print(line, end="", flush=True)
                lines.append(line)
        sections.append((name, command[2:], time.monotonic() - started, proc.returncode, "".join(lines)))
    BENCH_PAGE.write_text(_bench_page(sections, quick=quick, load=(load_before, _load())))
    print(f"\nwrote {BENCH_PAGE.relative_to(ROOT)}", flush=True)
    if any(code != 0 for _, _, _, code, _ in sections):
        sys.exit(1)


def _machine() -> list[str]:
    """What the figures were measured on: CPU, cores, memory, OS, Python."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(ValueError, OSError, AttributeError):
        memory = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB"
    version = "import platform; print(platform.python_version())"
    python = subprocess.run([PY, "-c", version], capture_output=True, text=True)
    return [
        f"- CPU: {cpu}, {os.cpu_count()} logical cores",
        f"- memory: {memory}",
        f"- system: {platform.system()}",
        f"- Python: {python.stdout.strip() or platform.python_version()}",
    ]


def _load() -> str:
    """The machine's load average over the last minute (how busy it was besides the benchmark)."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except (OSError, AttributeError):
        return "unknown"


def _bench_page(
    sections: list[tuple[str, list[str], float, int, str]], *, quick: bool, load: tuple[str, str] = ("?", "?")
) -> str:
    """docs/benchmarks.md: the machine, the date, and each benchmark's own output in a section."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out = [
        "# Benchmarks",
        "",
        f"Written by `python3 tasks.py bench{' --quick' if quick else ''}` on {when}"
        + (f" (commit {commit.stdout.strip()})" if commit.returncode == 0 else "")
        + "; run it again to regenerate this page rather than editing it.",
        "",
        *_machine(),
        f"- load average (1 min) when the run started and when it ended: {load[0]} and {load[1]}",
        "",
        "Every benchmark prints its figures beside a reference measured in the same run, on the same"
        " machine: a bare call, a bare OpenTelemetry span with the same attributes, the stock OpenTelemetry"
        " SDK's exit hold, raw sqlite3, or Celery used bare. Compare the ratios, not the absolute times: a"
        " shared machine is noisy, which is why the figures are medians and why `sdk_instructions.py` also"
        " counts instructions (callgrind), which do not move with load.",
        "",
        (
            "Scale: **quick** (`--quick`): the long benchmarks ran smaller than by default, with the arguments"
            " shown under each; their figures are noisier than a full run's."
            if quick
            else "Scale: full (each benchmark's defaults)."
        ),
        "",
    ]
    out += [f"- [benchmarks/{name}](#benchmarks{name.replace('.', '')})" for name, *_ in sections]
    for name, arguments, seconds, code, text in sections:
        summary = _first_line(ROOT / "benchmarks" / name)
        out += ["", f"## benchmarks/{name}", "", summary, ""]
        out.append(
            f"`python benchmarks/{' '.join([name, *arguments])}`, {seconds:.0f} s"
            + (f", **failed (exit code {code})**" if code else "")
        )
        out += ["", "```text", _without_local_paths(text).rstrip(), "```"]
    return "\n".join(out) + "\n"


def _without_local_paths(text: str) -> str:
    """A benchmark's output with this checkout's and the temporary folder's paths left out."""
    text = text.replace(str(ROOT) + os.sep, "").replace(str(ROOT), ".")
    return re.sub(re.escape(tempfile.gettempdir()) + r"/[^\s]*", "<temporary file>", text)


def _first_line(path: Path) -> str:
    """The first line of a benchmark's docstring: what it measures."""
    with contextlib.suppress(OSError, SyntaxError):
        doc = ast.get_docstring(ast.parse(path.read_text()))
        if doc:
            return doc.strip().splitlines()[0]
    return ""


def faults() -> None:
    """Run the fault suite at its long scale and write RELIABILITY.md from that run."""
    run(PY, "-m", "tests.faults.report", "--scale", "long", "-o", ROOT / "RELIABILITY.md")


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in {"demo", "test", "bench", "faults", "setup"}:
        sys.exit("usage: python3 tasks.py demo | test [pytest args] | bench [--quick] | faults | setup")
    setup()
    command = sys.argv[1]
    if command == "test":
        test(sys.argv[2:])
    elif command == "demo":
        demo()
    elif command == "bench":
        bench(sys.argv[2:])
    elif command == "faults":
        faults()


if __name__ == "__main__":
    main()
