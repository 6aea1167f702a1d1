"""Run a catalogue of hostile candidates through the code sandbox and report what was contained.

``python -m askd_ref.quality.sandbox_probe [--out FILE.json] [--cases a,b] [--modes ns,no-ns]``
prints a Markdown table (case, mode, status, score, seconds, contained) and the counts, and
optionally writes them as JSON (atomically). Each case is a candidate plus a check, made by this
process, that nothing escaped (a file outside the sandbox unchanged, no connection on a listening
socket, forked children dead, the secret not echoed, the temporary directory removed). It tells
a user which containment layers hold on *their* machine (root or not, namespaces or not); the
numbers in ``docs/reliability.md`` §5 come from it.
"""

import argparse
import dataclasses
import os
import select
import socket
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from askd_ref.io import atomic_write_json
from askd_ref.quality.code import RunResult, SandboxConfig, namespaces_available, run_tests

__all__ = ["CASES", "Case", "main", "run_probe"]

SECRET = "askd-probe-secret-6f1c"


@dataclasses.dataclass(frozen=True)
class Context:
    """Per-case resources the checks look at."""

    outside: Path
    """A directory outside the sandbox holding ``victim.txt`` (content ``keep``)."""
    port: int
    """A TCP port this process listens on (127.0.0.1)."""


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    attack: str
    candidate: Callable[[Context], str]
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Overrides of :class:`SandboxConfig` (e.g. a layer switched off to test the ones below it)."""


def _f(body: str) -> Callable[[Context], str]:
    """A candidate defining ``f()`` whose body is ``body`` (formatted with the context)."""

    def make(ctx: Context) -> str:
        text = body.format(out=str(ctx.outside), victim=str(ctx.outside / "victim.txt"), port=ctx.port)
        return "import os, sys, time, socket, shutil, pathlib\ndef f():\n" + textwrap.indent(
            textwrap.dedent(text).strip("\n"), "    "
        ) + "\n    return 1\n"

    return make


CASES: tuple[Case, ...] = (
    Case("loop", "infinite loop", _f("while True:\n    pass")),
    Case("loop_sigterm", "infinite loop ignoring SIGTERM", _f(
        "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True:\n    pass")),
    Case("sleep", "sleeps past the timeout", _f("time.sleep(3600)")),
    Case("alloc_loop", "allocates without bound", _f(
        "hog = []\nwhile True:\n    hog.append(bytearray(8 << 20))")),
    Case("alloc_huge", "one huge allocation", _f("x = bytearray(1 << 40)")),
    Case("alloc_catch", "allocates, swallows MemoryError, keeps going", _f(
        "hog = []\nwhile True:\n    try:\n        hog.append(bytearray(8 << 20))\n    except MemoryError:\n"
        "        pass")),
    Case("fork", "forks 8 sleeping children", _f(
        "for _ in range(8):\n    if os.fork() == 0:\n        time.sleep(60)\n        os._exit(0)")),
    Case("fork_unhooked", "forks 4 children with the fork block off (group kill must reap)", _f(
        # each child prints its pid as the caller's /proc names it (inside a PID namespace too)
        "for _ in range(4):\n    if os.fork() == 0:\n"
        "        print('child', os.readlink('/proc/self'), flush=True)\n"
        "        time.sleep(60)\n        os._exit(0)\ntime.sleep(0.3)\nraise SystemExit(1)"),
        {"block_process_creation": False}),
    Case("subprocess", "subprocess.run", _f("import subprocess\nsubprocess.run(['sleep', '60'])")),
    Case("system", "os.system", _f("os.system('sleep 60')")),
    Case("multiprocessing", "multiprocessing.Process", _f(
        "import multiprocessing\nmultiprocessing.Process(target=time.sleep, args=(60,)).start()")),
    Case("ctypes", "import ctypes (libc fork)", _f("import ctypes\nctypes.CDLL(None).fork()")),
    Case("kill_parent", "SIGKILL to the parent", _f("import signal\nos.kill(os.getppid(), signal.SIGKILL)")),
    Case("write_open", "open(outside, 'w')", _f("open('{out}/pwned', 'w').write('x')")),
    Case("write_append", "append to an outside file", _f("open('{victim}', 'a').write('x')")),
    Case("write_osopen", "os.open(outside, O_CREAT)", _f("os.open('{out}/pwned', os.O_CREAT | os.O_WRONLY)")),
    Case("write_relative", "../ path to outside", _f(
        "open(os.path.relpath('{out}/pwned'), 'w').write('x')")),
    Case("remove", "os.remove(outside)", _f("os.remove('{victim}')")),
    Case("rename", "os.rename(outside, inside)", _f("os.rename('{victim}', 'stolen')")),
    Case("rmtree", "shutil.rmtree(outside)", _f("shutil.rmtree('{out}')")),
    Case("chmod", "os.chmod(outside)", _f("os.chmod('{victim}', 0o777)")),
    Case("truncate", "os.truncate(outside)", _f("os.truncate('{victim}', 0)")),
    Case("symlink", "symlink to outside, write through it", _f(
        "os.symlink('{victim}', 'l')\nopen('l', 'w').write('x')")),
    Case("hardlink", "hard link to outside, write through it", _f(
        "os.link('{victim}', 'h')\nopen('h', 'w').write('x')")),
    Case("dir_fd", "create via dir_fd of an outside directory", _f(
        "fd = os.open('{out}', os.O_RDONLY)\nos.open('pwned', os.O_CREAT | os.O_WRONLY, dir_fd=fd)")),
    Case("env_secret", "reads a secret from its environment", _f(
        "v = os.environ.get('ASKD_PROBE_SECRET')\nprint(v)\nassert v is not None")),
    Case("parent_environ", "reads the parent's /proc/<pid>/environ", _f(
        "data = open('/proc/%d/environ' % os.getppid(), 'rb').read()\nprint(data[:4000])")),
    Case("tcp", "TCP connect to a local listener", _f(
        "socket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'leak')")),
    Case("udp", "UDP sendto", _f(
        "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', 9))")),
    Case("dns", "DNS look-up", _f("socket.getaddrinfo('localhost', 80)")),
    Case("unix_socket", "AF_UNIX socket", _f(
        "socket.socket(socket.AF_UNIX).connect('/var/run/docker.sock')")),
    Case("output_flood", "floods stdout", _f("while True:\n    sys.stdout.write('x' * 65536)")),
    Case("lift_limits", "raises its own rlimits", _f(
        "import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))")),
    Case("exit_early", "os._exit(0) in the middle of the tests", _f("os._exit(0)")),
    Case("abort", "SIGABRT", _f("os.abort()")),
    Case("recursion", "unbounded recursion (recursion limit 10**7)", _f(
        "sys.setrecursionlimit(10**7)\ndef g(n):\n    return g(n + 1) + 1\ng(0)")),
    Case("fake_results", "prints fake harness output", _f("print('P 0\\nDONE')\nraise SystemExit(0)")),
)


def _connection_arrived(srv: socket.socket) -> bool:
    readable, _, _ = select.select([srv], [], [], 0.2)
    return bool(readable)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _run_case(case: Case, use_ns: bool, timeout_s: float, memory_mb: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="askd-probe-") as tmp:
        outside = Path(tmp) / "outside"
        outside.mkdir()
        victim = outside / "victim.txt"
        victim.write_text("keep")
        victim.chmod(0o644)
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        srv.setblocking(False)
        ctx = Context(outside=outside, port=srv.getsockname()[1])
        cfg = SandboxConfig(
            **{"timeout_s": timeout_s, "memory_mb": memory_mb, "file_size_mb": 4, "use_namespaces": use_ns,
               **case.config}
        )
        old = os.environ.get("ASKD_PROBE_SECRET")
        os.environ["ASKD_PROBE_SECRET"] = SECRET
        try:
            t0 = time.monotonic()
            result: RunResult = run_tests(case.candidate(ctx), "assert f() == 1\n", cfg)
            wall = time.monotonic() - t0
        finally:
            if old is None:
                del os.environ["ASKD_PROBE_SECRET"]
            else:
                os.environ["ASKD_PROBE_SECRET"] = old
        escapes: list[str] = []
        if _connection_arrived(srv):
            escapes.append("connection arrived")
        srv.close()
        if sorted(p.name for p in outside.iterdir()) != ["victim.txt"]:
            escapes.append("files created outside")
        if not victim.exists() or victim.read_text() != "keep" or victim.stat().st_mode & 0o777 != 0o644:
            escapes.append("outside file changed")
        if SECRET in result.stdout_tail + result.stderr_tail:
            escapes.append("secret leaked")
        if Path(result.workdir).exists():
            escapes.append("temp dir left")
        pids = [int(ln.split()[1]) for ln in result.stdout_tail.splitlines() if ln.startswith("child ")]
        time.sleep(0.05 if pids else 0.0)
        if any(_alive(p) for p in pids):
            escapes.append("children alive")
    return {
        "case": case.name,
        "attack": case.attack,
        "namespaces": result.namespaces,
        "status": result.status,
        "score": result.score,
        "seconds": round(wall, 2),
        "contained": not escapes and result.score == 0.0,
        "escapes": escapes,
        "children_seen": len(pids),
        "first_failure": result.failures[0][:120] if result.failures else "",
    }


def run_probe(
    cases: tuple[Case, ...] = CASES,
    *,
    modes: tuple[bool, ...] | None = None,
    timeout_s: float = 2.0,
    memory_mb: int = 256,
) -> dict[str, Any]:
    """Run ``cases`` under each namespace mode (default: without, and with where available)."""
    if modes is None:
        modes = (False, True) if namespaces_available() else (False,)
    rows = [_run_case(c, ns, timeout_s, memory_mb) for ns in modes for c in cases]
    return {
        "python": sys.version.split()[0],
        "platform": sys.platform,
        "euid": os.geteuid(),
        "namespaces_available": namespaces_available(),
        "timeout_s": timeout_s,
        "memory_mb": memory_mb,
        "runs": len(rows),
        "contained": sum(r["contained"] for r in rows),
        "by_status": {s: sum(r["status"] == s for r in rows) for s in sorted({r["status"] for r in rows})},
        "rows": rows,
    }


def _table(report: dict[str, Any]) -> str:
    lines = [
        "| case | attack | namespaces | status | score | s | contained |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        note = "yes" if r["contained"] else "NO: " + ", ".join(r["escapes"] or ["score > 0"])
        if r["children_seen"]:
            note += f" ({r['children_seen']} children forked, all dead)" if r["contained"] else ""
        lines.append(
            f"| {r['case']} | {r['attack']} | {'yes' if r['namespaces'] else 'no'} | {r['status']} | "
            f"{r['score']:g} | {r['seconds']:.2f} | {note} |"
        )
    lines.append("")
    lines.append(
        f"{report['contained']}/{report['runs']} runs contained; statuses {report['by_status']}; "
        f"euid {report['euid']}, namespaces available: {report['namespaces_available']}, "
        f"timeout {report['timeout_s']} s, memory {report['memory_mb']} MiB"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="also write the report as JSON here")
    parser.add_argument("--cases", help="comma-separated case names (default: all)")
    parser.add_argument("--modes", default="auto", help="'auto', 'no-ns', 'ns' or 'no-ns,ns'")
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--memory-mb", type=int, default=256)
    args = parser.parse_args(argv)
    cases = CASES
    if args.cases:
        wanted = args.cases.split(",")
        unknown = sorted(set(wanted) - {c.name for c in CASES})
        if unknown:
            parser.error(f"unknown case(s) {unknown}; known: {', '.join(c.name for c in CASES)}")
        cases = tuple(c for c in CASES if c.name in wanted)
    modes: tuple[bool, ...] | None = None
    if args.modes != "auto":
        modes = tuple({"no-ns": False, "ns": True}[m] for m in args.modes.split(","))
    report = run_probe(cases, modes=modes, timeout_s=args.timeout, memory_mb=args.memory_mb)
    print(_table(report))
    if args.out is not None:
        atomic_write_json(args.out, report)
    return 0 if report["contained"] == report["runs"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
