r"""Unit-test pass fraction for code tasks (spec §5): r = passed tests / total tests, run contained.

**Test format.** ``Sample.tests`` holds Python source. Its tests are the top-level ``assert``
statements and the top-level ``def test_*():`` functions (no fixtures/arguments). Every other
top-level statement (imports, helpers, constants) is setup. The statements run in source order in
the namespace the candidate defined (so tests call the candidate's functions directly); each
``assert`` is one test where it stands, and the ``test_*`` functions are called afterwards in
definition order. A test passes if it raises nothing (any exception, ``SystemExit`` included, is a
failure). A setup statement that raises fails every test not yet run. ``r = passed / total`` with
``total`` counted by the parent from the source (the candidate cannot change the denominator);
tests that define no test at all, or do not parse, are a ``ValueError`` naming the sample.

**Candidate.** The code is the response's fenced code blocks (```` ```python ```` or untyped,
concatenated in order), or the whole response if it has none (``extract_code=False`` uses the
raw response). ``prepend_prompt=True`` runs ``prompt + code`` (HumanEval-style completions). The
candidate runs with ``__name__ == "__candidate__"``, so its ``if __name__ == "__main__":`` block
does not run. A candidate that raises while being defined scores 0.

**Score 0** when the run times out, is killed (memory, CPU time, file size, signal), exits
before the harness reports completion (``os._exit``, crash), or the candidate fails to define.

**Containment** (each run; see ``docs/reliability.md`` §5 for what was tested):

- a fresh temporary directory, the child's cwd, ``HOME`` and ``TMPDIR``; always removed afterwards;
- ``sys.executable -I -B`` (isolated mode: no ``PYTHON*`` variables, no user site, no bytecode
  writes), a minimal environment (``PATH``, ``HOME``, ``TMPDIR``, ``LANG``, thread-count caps):
  no variable of the caller reaches the child;
- resource limits set before the candidate runs: ``RLIMIT_AS`` (memory), ``RLIMIT_CPU``,
  ``RLIMIT_FSIZE``, ``RLIMIT_NOFILE``, ``RLIMIT_CORE = 0``, ``RLIMIT_NPROC = 0`` (no new
  processes or threads; **only effective for a non-root user without CAP_SYS_RESOURCE**);
- a new session/process group, killed as a whole (``SIGKILL``) at the wall-clock timeout and
  after every run, so children left behind in the group die too;
- where available (``unshare`` works, e.g. as root or with user namespaces), new **network and
  PID namespaces** (``unshare --net --pid --fork --kill-child``): no network interface but a
  down loopback, and every process the candidate creates dies with it;
- a PEP 578 audit hook installed before the candidate runs, that raises ``PermissionError`` on:
  socket creation, DNS look-ups, connect/bind/send (network); ``fork``, ``exec*``, ``spawn``,
  ``system``, ``subprocess.Popen``, ``kill``/``killpg`` and importing ``ctypes``/``_ctypes``/
  ``_posixsubprocess`` (processes); opening for writing, creating, removing, renaming, linking,
  chmod/chown/utime/truncate of any path outside the temporary directory, any ``dir_fd``-relative
  mutation, opening directories outside it, reading ``/proc/<pid>`` of other processes
  (the parent's environment), and ``resource.setrlimit``/``prlimit`` (so root cannot lift the limits).

**Not guaranteed.** Audit hooks are not a security boundary (PEP 578 says so): code that
corrupts interpreter memory or finds an unhooked path can bypass them. Without namespaces the
network block is only the audit hook; as root, ``RLIMIT_NPROC`` is ignored and only the hook and
the process-group kill stop forks (a child that calls ``setsid`` escapes the group kill). Reads
are not restricted (apart from other processes' ``/proc`` entries): the child runs as the
caller's user and can read what that user can read. The pass fraction is robust to crashes,
exits, hangs and printing, not to a candidate that deliberately tampers with the harness in its
own process. For untrusted code at scale, run the trainer in a container or VM as well.
"""

import ast
import concurrent.futures
import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from askd_ref.engine.data import Sample
from askd_ref.quality import validate_scores

__all__ = [
    "RunOutcome",
    "RunResult",
    "SandboxConfig",
    "UnitTestPassRate",
    "classify_run",
    "count_tests",
    "extract_code",
    "namespaces_available",
    "run_tests",
]

logger = logging.getLogger(__name__)

Status = Literal["ok", "timeout", "crashed", "candidate_error"]


@dataclasses.dataclass(frozen=True)
class SandboxConfig:
    """Limits and containment layers of one candidate run. Defaults suit short unit tests."""

    timeout_s: float = 10.0
    """Wall-clock limit; the whole process group is killed when it passes (score 0)."""
    memory_mb: int = 1024
    """``RLIMIT_AS`` (address space) of the child, MiB."""
    cpu_s: float | None = None
    """``RLIMIT_CPU`` seconds; ``None`` means ``ceil(timeout_s) + 1``."""
    file_size_mb: int = 16
    """``RLIMIT_FSIZE``: the largest file the child may write, MiB (stdout/stderr included)."""
    max_open_files: int = 64
    """``RLIMIT_NOFILE``."""
    block_network: bool = True
    """Audit-hook layer: no sockets, no DNS."""
    block_file_writes: bool = True
    """Audit-hook layer: no writes/removals/renames outside the temporary directory."""
    block_process_creation: bool = True
    """Audit-hook layer: no fork/exec/spawn/subprocess/kill, no ctypes. ``RLIMIT_NPROC = 0``
    and the process-group kill apply regardless."""
    use_namespaces: bool | None = None
    """New network + PID namespaces via ``unshare``: ``None`` = when available, ``True`` =
    required (``RuntimeError`` if unavailable), ``False`` = never."""

    def __post_init__(self) -> None:
        t = self.timeout_s
        if isinstance(t, bool) or not isinstance(t, int | float) or not (math.isfinite(t) and t > 0):
            raise ValueError(f"timeout_s must be a positive finite number, got {self.timeout_s!r}")
        for name in ("memory_mb", "file_size_mb", "max_open_files"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.max_open_files < 16:
            raise ValueError(
                f"max_open_files must be at least 16 (the interpreter needs some), got {self.max_open_files}"
            )
        if self.cpu_s is not None and not (math.isfinite(self.cpu_s) and self.cpu_s > 0):
            raise ValueError(f"cpu_s must be None or a positive finite number, got {self.cpu_s!r}")


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What happened in one sandboxed run."""

    status: Status
    """``ok`` (harness finished), ``timeout``, ``crashed`` (killed or exited early),
    ``candidate_error`` (the candidate raised or did not compile while being defined)."""
    passed: int
    total: int
    score: float
    """``passed / total`` if ``status == "ok"``, else 0."""
    returncode: int | None
    """The child's exit status (negative: killed by that signal)."""
    elapsed_s: float
    workdir: str
    """The temporary directory (removed when the run returns)."""
    stdout_tail: str
    stderr_tail: str
    failures: tuple[str, ...]
    """One line per failing test or error (exception type and message, truncated)."""
    namespaces: bool
    """Whether the run used network/PID namespaces."""


_TAIL_BYTES = 4000


def count_tests(tests: str) -> int:
    """Number of tests in ``tests``: top-level ``assert`` statements plus top-level ``test_*`` functions.

    >>> count_tests("import math\\nassert f(1) == 2\\nassert f(2) == 3\\n"
    ...             "def test_x():\\n    assert f(0) == 1\\n")
    3
    """
    tree = ast.parse(tests, filename="<tests>")
    return sum(
        isinstance(node, ast.Assert) or (isinstance(node, ast.FunctionDef) and node.name.startswith("test_"))
        for node in tree.body
    )


_FENCE_RE = re.compile(r"```[ \t]*([\w+.-]*)[^\n]*\n(.*?)```", re.DOTALL)


def extract_code(response: str) -> str:
    """The code in a response: its Python (or untyped) fenced blocks joined in order; if there are
    fenced blocks but none is Python, all of them; with no fence, the whole response.

    >>> extract_code("Here:\\n```python\\ndef f(x):\\n    return x + 1\\n```\\nDone.")
    'def f(x):\\n    return x + 1\\n'
    >>> extract_code("def f(x): return x")
    'def f(x): return x'
    """
    blocks = _FENCE_RE.findall(response)
    if not blocks:
        return response
    python = [body for lang, body in blocks if lang.lower() in ("", "python", "py", "python3")]
    return "\n".join(python if python else [body for _, body in blocks])


_NAMESPACES_OK: bool | None = None
_UNSHARE_ARGS = ("--net", "--pid", "--fork", "--kill-child")


def namespaces_available() -> bool:
    """Whether ``unshare --net --pid --fork --kill-child`` works here (probed once, cached)."""
    global _NAMESPACES_OK
    if _NAMESPACES_OK is None:
        exe = shutil.which("unshare")
        ok = False
        if exe is not None and sys.platform.startswith("linux"):
            try:
                done = subprocess.run(
                    [exe, *_UNSHARE_ARGS, "--", sys.executable, "-I", "-c", "pass"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=20,
                    check=False,
                    env={"PATH": os.defpath},
                )
                ok = done.returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                ok = False
        _NAMESPACES_OK = ok
    return _NAMESPACES_OK


# The child program (run with ``python -I -B -c``). Self-contained: it may import only the
# standard library. argv[1] is the fd to report results on; the payload comes on stdin.
_HARNESS = r'''
import ast, json, os, resource, sys
sys.dont_write_bytecode = True
RES = int(sys.argv[1])

def emit(line):
    os.write(RES, (line.replace("\n", " ")[:500] + "\n").encode("utf-8", "replace"))

def finish(code):
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    os._exit(code)

def describe(exc):
    return type(exc).__name__ + ": " + str(exc)[:200]

try:
    payload = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    sys.stdin.close()
    ROOT = os.path.realpath(payload["workdir"])
    for name, value in payload["rlimits"]:
        which = getattr(resource, name)
        soft, hard = value if isinstance(value, list) else (value, value)
        _, old_hard = resource.getrlimit(which)
        if old_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, old_hard), min(hard, old_hard)
        resource.setrlimit(which, (soft, hard))
    policy = payload["policy"]
    for mod in ("_posixsubprocess", "ctypes", "_ctypes", "subprocess", "multiprocessing"):
        if policy["processes"]:
            sys.modules.pop(mod, None)
except BaseException as exc:
    emit("HARNESS_ERROR " + describe(exc))
    os._exit(3)

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
# event -> (indices of path arguments, indices of dir_fd arguments); -1/None dir_fd means "none"
MUTATE = {"os.remove": ((0,), (1,)), "os.rmdir": ((0,), (1,)), "os.mkdir": ((0,), (2,)),
          "os.chmod": ((0,), (2,)), "os.lchmod": ((0,), ()), "os.chown": ((0,), (3,)),
          "os.lchown": ((0,), ()), "os.truncate": ((0,), ()), "os.utime": ((0,), (3,)),
          "os.chflags": ((0,), ()), "os.lchflags": ((0,), ()), "os.setxattr": ((0,), ()),
          "os.removexattr": ((0,), ()), "os.mkfifo": ((0,), (2,)), "os.mknod": ((0,), (3,)),
          "os.rename": ((0, 1), (2, 3)), "os.link": ((0, 1), (2, 3)), "os.symlink": ((1,), (2,)),
          "shutil.rmtree": ((0,), (1,)), "shutil.chown": ((0,), ()), "shutil.copyfile": ((1,), ()),
          "shutil.copymode": ((1,), ()), "shutil.copystat": ((1,), ()), "shutil.copytree": ((1,), ()),
          "shutil.move": ((0, 1), ()), "shutil.unpack_archive": ((1,), ()), "shutil.make_archive": ((0,), ())}
NET = {"socket.__new__", "socket.bind", "socket.connect", "socket.getaddrinfo", "socket.gethostbyname",
       "socket.gethostbyname_ex", "socket.gethostbyaddr", "socket.getnameinfo", "socket.sendto",
       "socket.sendmsg", "socket.socketpair", "socket.sethostname"}
PROC = {"os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
        "subprocess.Popen", "os.kill", "os.killpg", "signal.pthread_kill", "pty.spawn", "os.startfile",
        "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "os.pidfd_open"}
PROC_MODULES = {"ctypes", "_ctypes", "_posixsubprocess", "cffi", "_cffi_backend"}
ALWAYS = {"resource.setrlimit", "resource.prlimit"}
try:
    MYPID = os.path.basename(os.path.realpath("/proc/self"))  # the pid as /proc names it (namespaces)
except OSError:
    MYPID = str(os.getpid())
busy = []

def inside(path):
    if isinstance(path, int):
        return False
    p = os.fsdecode(path)
    full = os.path.realpath(os.path.join(os.getcwd(), p))
    return full == ROOT or full.startswith(ROOT + os.sep) or full == "/dev/null"

def other_proc(path):
    if isinstance(path, int):
        return False
    full = os.path.realpath(os.path.join(os.getcwd(), os.fsdecode(path)))
    parts = full.split(os.sep)
    return len(parts) > 2 and parts[1] == "proc" and parts[2].isdigit() and parts[2] != MYPID

def deny(event, why):
    raise PermissionError("askd sandbox: " + event + " blocked (" + why + ")")

def hook(event, args):
    if busy:
        return
    busy.append(1)
    try:
        if event in ALWAYS:
            deny(event, "limits are fixed")
        if policy["network"] and event in NET:
            deny(event, "no network")
        if policy["processes"]:
            if event in PROC:
                deny(event, "no new processes")
            if event == "import" and args[0].split(".")[0] in PROC_MODULES:
                deny(event + " " + args[0], "no new processes")
        if policy["files"]:
            if event == "open":
                path, mode, flags = args
                if isinstance(path, int) or path is None:
                    return
                if other_proc(path):
                    deny("open " + os.fsdecode(path), "other processes' /proc entries")
                writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                    isinstance(flags, int) and flags & WRITE_FLAGS)
                if writing and not inside(path):
                    deny("open " + os.fsdecode(path) + " for writing", "outside the sandbox directory")
                is_dir = os.path.isdir(os.path.join(os.getcwd(), os.fsdecode(path)))
                if not writing and is_dir and not inside(path):
                    deny("open directory " + os.fsdecode(path), "outside the sandbox directory")
            elif event in MUTATE:
                path_idx, fd_idx = MUTATE[event]
                for i in fd_idx:
                    if i < len(args) and args[i] is not None and args[i] != -1:
                        deny(event, "dir_fd-relative change")
                for i in path_idx:
                    if i < len(args) and args[i] is not None and not inside(args[i]):
                        deny(event, "outside the sandbox directory: " + repr(args[i])[:100])
    finally:
        busy.pop()

sys.addaudithook(hook)

candidate_src = payload["candidate"]
tests_src = payload["tests"]
ns = {"__name__": "__candidate__", "__builtins__": __builtins__}
emit("READY")
try:
    exec(compile(candidate_src, "<candidate>", "exec"), ns)
except BaseException as exc:
    emit("CANDIDATE_ERROR " + describe(exc))
    emit("DONE")
    finish(0)

tree = ast.parse(tests_src, filename="<tests>")
index = 0
functions = []
broken = None
for node in tree.body:
    is_assert = isinstance(node, ast.Assert)
    is_test_fn = isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    if broken is not None:
        if is_assert:
            emit("F %d setup failed: %s" % (index, broken))
            index += 1
        elif is_test_fn:
            functions.append(node.name)
        continue
    code = compile(ast.Module(body=[node], type_ignores=[]), "<tests>", "exec")
    try:
        exec(code, ns)
        if is_assert:
            emit("P %d" % index)
    except BaseException as exc:
        if is_assert:
            emit("F %d %s" % (index, describe(exc)))
        else:
            broken = describe(exc)
    if is_assert:
        index += 1
    elif is_test_fn:
        functions.append(node.name)
for name in functions:
    if broken is not None:
        emit("F %d setup failed: %s" % (index, broken))
    else:
        try:
            ns[name]()
            emit("P %d" % index)
        except BaseException as exc:
            emit("F %d %s" % (index, describe(exc)))
    index += 1
emit("DONE")
finish(0)
'''


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - _TAIL_BYTES))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _remove_tree(root: Path) -> None:
    def retry(func: object, path: str, _exc: object) -> None:
        with contextlib.suppress(OSError):
            os.chmod(path, 0o700)
            parent = os.path.dirname(path)
            os.chmod(parent, 0o700)
        with contextlib.suppress(OSError):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)

    for _ in range(3):
        if not root.exists():
            return
        shutil.rmtree(root, onerror=retry)
    if root.exists():
        warnings.warn(
            f"code sandbox: could not remove the temporary directory {root}", RuntimeWarning, stacklevel=2
        )


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def run_tests(candidate: str, tests: str, config: SandboxConfig | None = None) -> RunResult:
    """Run ``candidate`` then ``tests`` (format: module doc) in a contained child process.

    Never raises for anything the candidate does; raises ``ValueError`` if ``tests`` does not
    parse or defines no test, and ``RuntimeError`` if the sandbox itself cannot start (e.g. a
    limit the system refuses, or ``use_namespaces=True`` where ``unshare`` does not work).

    >>> r = run_tests("def f(x):\\n    return 2 * x\\n", "assert f(2) == 4\\nassert f(3) == 5\\n",
    ...               SandboxConfig(timeout_s=10))
    >>> r.status, r.passed, r.total, r.score
    ('ok', 1, 2, 0.5)
    """
    if os.name != "posix":
        raise RuntimeError("the code sandbox needs a POSIX system (resource limits, process groups)")
    cfg = config if config is not None else SandboxConfig()
    total = _check_run_inputs(candidate, tests)
    use_ns = _use_namespaces(cfg)
    root = Path(tempfile.mkdtemp(prefix="askd-sandbox-"))
    work = root / "work"
    work.mkdir()
    payload = _harness_payload(cfg, work, candidate, tests)
    try:
        run = _spawn_and_wait(root, payload, _child_env(work), cfg, use_ns)
    finally:
        _remove_tree(root)
    outcome = classify_run(
        run.lines,
        total=total,
        returncode=run.returncode,
        timed_out=run.timed_out,
        timeout_s=cfg.timeout_s,
        stderr_tail=run.stderr_tail,
    )
    result = RunResult(
        status=outcome.status,
        passed=outcome.passed,
        total=total,
        score=outcome.passed / total if outcome.status == "ok" else 0.0,
        returncode=run.returncode,
        elapsed_s=run.elapsed_s,
        workdir=str(work),
        stdout_tail=run.stdout_tail,
        stderr_tail=run.stderr_tail,
        failures=outcome.failures,
        namespaces=use_ns,
    )
    logger.debug("code sandbox: %s %d/%d in %.2fs", outcome.status, result.passed, total, run.elapsed_s)
    return result


def _check_run_inputs(candidate: object, tests: object) -> int:
    """The number of tests in ``tests``; ``TypeError``/``ValueError`` for unusable inputs."""
    if not isinstance(candidate, str):
        raise TypeError(f"candidate must be a str, got {type(candidate).__name__}")
    if not isinstance(tests, str):
        raise TypeError(f"tests must be a str, got {type(tests).__name__}")
    try:
        total = count_tests(tests)
    except SyntaxError as err:
        raise ValueError(f"tests do not parse: {err}") from None
    if total == 0:
        raise ValueError("tests define no test (expected top-level assert statements or test_* functions)")
    return total


def _use_namespaces(cfg: SandboxConfig) -> bool:
    """Whether this run uses network/PID namespaces (``RuntimeError`` if required but unavailable)."""
    if cfg.use_namespaces is None:
        return namespaces_available()
    if cfg.use_namespaces and not namespaces_available():
        raise RuntimeError(
            "use_namespaces=True but `unshare --net --pid --fork --kill-child` does not work here"
        )
    return cfg.use_namespaces


def _harness_payload(cfg: SandboxConfig, work: Path, candidate: str, tests: str) -> dict[str, Any]:
    """What the harness reads on stdin: working directory, resource limits, policy, code."""
    cpu = cfg.cpu_s if cfg.cpu_s is not None else math.ceil(cfg.timeout_s) + 1
    cpu_soft = max(1, math.ceil(cpu))
    mib = 1024 * 1024
    rlimits: list[tuple[str, int | list[int]]] = [
        ("RLIMIT_CORE", 0),
        ("RLIMIT_CPU", [cpu_soft, cpu_soft + 1]),
        ("RLIMIT_FSIZE", cfg.file_size_mb * mib),
        ("RLIMIT_NOFILE", cfg.max_open_files),
        ("RLIMIT_NPROC", 0),
        ("RLIMIT_AS", cfg.memory_mb * mib),
    ]
    return {
        "workdir": str(work),
        "rlimits": rlimits,
        "policy": {
            "network": cfg.block_network,
            "files": cfg.block_file_writes,
            "processes": cfg.block_process_creation,
        },
        "candidate": candidate,
        "tests": tests,
    }


def _child_env(work: Path) -> dict[str, str]:
    """The child's whole environment: a minimal PATH, home and temp in the working directory."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(work),
        "TMPDIR": str(work),
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


@dataclasses.dataclass(frozen=True)
class _Spawned:
    """What a finished (or killed) harness process left behind."""

    lines: list[str]
    returncode: int | None
    timed_out: bool
    elapsed_s: float
    stdout_tail: str
    stderr_tail: str


def _spawn_and_wait(
    root: Path, payload: dict[str, Any], env: dict[str, str], cfg: SandboxConfig, use_ns: bool
) -> _Spawned:
    """Start the harness in its own session under ``root``, feed it ``payload``, wait or kill."""
    work = Path(payload["workdir"])
    cmd = [sys.executable, "-I", "-B", "-c", _HARNESS]
    start = time.monotonic()
    proc: subprocess.Popen[bytes] | None = None
    try:
        res_fd = os.open(root / "results", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            cmd.append(str(res_fd))
            if use_ns:
                unshare = shutil.which("unshare")
                assert unshare is not None
                cmd = [unshare, *_UNSHARE_ARGS, "--", *cmd]
            with (root / "stdout").open("wb") as out_file, (root / "stderr").open("wb") as err_file:
                proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.PIPE,
                    stdout=out_file,
                    stderr=err_file,
                    cwd=work,
                    env=env,
                    pass_fds=(res_fd,),
                    start_new_session=True,
                    close_fds=True,
                )
        finally:
            os.close(res_fd)
        timed_out = _communicate(proc, json.dumps(payload).encode("utf-8"), cfg.timeout_s)
        _kill_group(proc.pid)  # whatever the candidate left running in its group
        elapsed = time.monotonic() - start
        return _Spawned(
            lines=(root / "results").read_text(encoding="utf-8", errors="replace").splitlines(),
            returncode=proc.returncode,
            timed_out=timed_out,
            elapsed_s=elapsed,
            stdout_tail=_tail(root / "stdout"),
            stderr_tail=_tail(root / "stderr"),
        )
    finally:
        if proc is not None and proc.returncode is None:
            _kill_group(proc.pid)
            with contextlib.suppress(Exception):
                proc.wait(timeout=5)


def _communicate(proc: subprocess.Popen[bytes], data: bytes, timeout_s: float) -> bool:
    """Send ``data`` and wait up to ``timeout_s``; kill the group on timeout. True if it timed out."""
    try:
        proc.communicate(data, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        proc.wait()
        return True
    except BrokenPipeError:  # the child died before reading its input
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.wait()
            return True
    return False


@dataclasses.dataclass(frozen=True)
class RunOutcome:
    """The verdict on one harness run: status, tests passed (0 unless ``ok``), failure lines."""

    status: Status
    passed: int
    failures: tuple[str, ...]


def classify_run(
    lines: Sequence[str],
    *,
    total: int,
    returncode: int | None,
    timed_out: bool,
    timeout_s: float,
    stderr_tail: str = "",
) -> RunOutcome:
    """Classify a run from the harness's result lines and the child's exit (no process involved).

    The harness writes ``READY`` once its limits are in place, ``P i`` / ``F i message`` per
    test, ``CANDIDATE_ERROR message`` if the candidate fails to define, ``DONE`` at the end
    and ``HARNESS_ERROR message`` when it cannot set itself up. Raises ``RuntimeError`` when
    the sandbox never started.

    >>> classify_run(["READY", "P 0", "F 1 AssertionError", "DONE"], total=2, returncode=0,
    ...              timed_out=False, timeout_s=10.0)
    RunOutcome(status='ok', passed=1, failures=('test 1: AssertionError',))
    """
    harness_error = [ln for ln in lines if ln.startswith("HARNESS_ERROR")]
    if harness_error and "READY" not in lines:
        raise RuntimeError(f"code sandbox failed to start: {harness_error[0]}; stderr: {stderr_tail[-500:]}")
    if not timed_out and "READY" not in lines and returncode != 0:
        raise RuntimeError(
            f"code sandbox failed to start (exit status {returncode}); stderr: {stderr_tail[-500:]}"
        )
    outcome: dict[int, bool] = {}
    failures: list[str] = []
    candidate_error = False
    for line in lines:
        kind, _, rest = line.partition(" ")
        if kind in ("P", "F"):
            idx_text, _, message = rest.partition(" ")
            if idx_text.isdigit() and int(idx_text) < total and int(idx_text) not in outcome:
                outcome[int(idx_text)] = kind == "P"
                if kind == "F":
                    failures.append(f"test {idx_text}: {message}")
        elif kind == "CANDIDATE_ERROR":
            candidate_error = True
            failures.append(f"candidate: {rest}")
    done = "DONE" in lines and returncode == 0
    status: Status
    if timed_out:
        status = "timeout"
        failures.append(f"timed out after {timeout_s:g} s")
    elif candidate_error and done:
        status = "candidate_error"
    elif done:
        status = "ok"
    else:
        status = "crashed"
        failures.append(f"exited early with status {returncode}")
    return RunOutcome(status, sum(outcome.values()) if status == "ok" else 0, tuple(failures))


class UnitTestPassRate:
    """Quality r = fraction of ``Sample.tests`` the response's code passes, run contained.

    ``max_workers`` runs that many samples in parallel (threads, each waiting on its own child
    process). Samples without ``tests`` are a ``ValueError`` naming the sample, as are tests
    that do not parse or define no test. See the module doc for format and containment.
    """

    name: str = "unit_tests"

    def __init__(
        self,
        *,
        timeout_s: float = 10.0,
        memory_mb: int = 1024,
        max_workers: int = 1,
        extract_code: bool = True,
        prepend_prompt: bool = False,
        config: SandboxConfig | None = None,
    ) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError(f"max_workers must be a positive int, got {max_workers!r}")
        if config is None:
            config = SandboxConfig(timeout_s=timeout_s, memory_mb=memory_mb)
        self.config = config
        self.max_workers = max_workers
        self.extract_code = extract_code
        self.prepend_prompt = prepend_prompt

    def candidate(self, sample: Sample) -> str:
        """The program run for ``sample`` (extraction and prompt prefix applied)."""
        code = extract_code(sample.response) if self.extract_code else sample.response
        return sample.prompt + code if self.prepend_prompt else code

    def run(self, samples: Sequence[Sample]) -> list[RunResult]:
        """The detailed :class:`RunResult` of every sample, in order."""
        for i, sample in enumerate(samples):
            where = f"quality signal {self.name!r}: sample {i} (prompt {sample.prompt[:40]!r})"
            if sample.tests is None:
                raise ValueError(f"{where} has no tests; the unit-test signal needs Sample.tests")
            try:
                if count_tests(sample.tests) == 0:
                    raise ValueError(f"{where}: its tests define no test (top-level asserts or test_* fns)")
            except SyntaxError as err:
                raise ValueError(f"{where}: its tests do not parse: {err}") from None

        def one(sample: Sample) -> RunResult:
            assert sample.tests is not None
            return run_tests(self.candidate(sample), sample.tests, self.config)

        if self.max_workers == 1 or len(samples) <= 1:
            return [one(s) for s in samples]
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.max_workers) as pool:
            return list(pool.map(one, samples))

    def score(self, samples: Sequence[Sample]) -> list[float]:
        return validate_scores(self.name, samples, [r.score for r in self.run(samples)])
