"""Unit-test pass-fraction signal (spec §5) and its containment of hostile candidates (issue 7.5).

Each hostile case runs under both containment set-ups where they differ: with network/PID
namespaces (when ``unshare`` works here) and without them (audit hook + rlimits + process group
only), so that the namespace-free layers are tested on their own.
"""

import os
import select
import socket
import sys
import textwrap
import time
from pathlib import Path

import pytest

from askd_ref.engine.data import Sample
from askd_ref.quality import QualitySignal, get_signal
from askd_ref.quality.code import (
    RunOutcome,
    RunResult,
    SandboxConfig,
    UnitTestPassRate,
    classify_run,
    count_tests,
    extract_code,
    namespaces_available,
    run_tests,
)

FAST = 3.0  # seconds: the wall-clock limit of the hostile cases
NS_MODES = [
    pytest.param(False, id="no-namespaces"),
    pytest.param(
        True,
        id="namespaces",
        marks=pytest.mark.skipif(not namespaces_available(), reason="unshare does not work here"),
    ),
]

TESTS = "assert add(1, 2) == 3\nassert add(-1, 1) == 0\nassert add(10, 5) == 15\n"


def _cfg(ns: bool, **kw: object) -> SandboxConfig:
    base: dict[str, object] = {"timeout_s": FAST, "memory_mb": 256, "use_namespaces": ns}
    base.update(kw)
    return SandboxConfig(**base)  # type: ignore[arg-type]


def _check_contained(r: RunResult) -> None:
    assert not Path(r.workdir).exists(), f"temporary directory {r.workdir} left behind"
    assert not Path(r.workdir).parent.exists()


def _d(src: str) -> str:
    return textwrap.dedent(src).lstrip("\n")


# --- ordinary candidates ---------------------------------------------------------------------


def test_count_tests_and_extract_code() -> None:
    assert count_tests(TESTS) == 3
    assert count_tests("import math\nX = 1\ndef helper():\n    assert False\ndef test_a():\n    pass\n") == 1
    assert count_tests("x = 1\n") == 0
    fenced = "Sure.\n```python\ndef add(a, b):\n    return a + b\n```\nand\n```\nY = 2\n```\n"
    assert extract_code(fenced) == "def add(a, b):\n    return a + b\n\nY = 2\n"
    assert extract_code("```bash\nls\n```") == "ls\n"
    assert extract_code("def f(): pass") == "def f(): pass"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("return a + b", 1.0),
        ("return a + b if a >= 0 else 99", 2 / 3),  # fails add(-1, 1)
        ("return 7", 0.0),
        ("raise RuntimeError('boom')", 0.0),
    ],
)
def test_pass_fraction(body: str, expected: float) -> None:
    r = run_tests(f"def add(a, b):\n    {body}\n", TESTS, _cfg(False))
    assert r.status == "ok", r
    assert r.score == pytest.approx(expected)
    assert r.total == 3
    assert len(r.failures) == round(3 * (1 - expected))
    _check_contained(r)


def test_test_functions_setup_and_main_guard() -> None:
    tests = _d(
        """
        import math
        BASE = 10
        def helper(x):
            return add(x, BASE)
        def test_helper():
            assert helper(1) == 11
        assert add(2, 2) == 4
        def test_fails():
            assert add(0, 0) == 1
        def test_needs_fixture(tmp_path):
            pass
        """
    )
    candidate = "def add(a, b):\n    return a + b\nif __name__ == '__main__':\n    raise SystemExit(1)\n"
    r = run_tests(candidate, tests, _cfg(False))
    assert (r.status, r.passed, r.total) == ("ok", 2, 4), r


def test_setup_error_fails_remaining_tests() -> None:
    tests = "assert add(1, 1) == 2\nimport no_such_module_askd\nassert add(2, 2) == 4\n"
    r = run_tests("def add(a, b):\n    return a + b\n", tests, _cfg(False))
    assert (r.status, r.passed, r.total) == ("ok", 1, 2)
    assert any("setup failed" in f for f in r.failures)


@pytest.mark.parametrize(
    "candidate",
    ["def add(a, b) return a + b\n", "import no_such_module_askd\n", "raise SystemExit(0)\n"],
    ids=["syntax-error", "import-error", "exit-at-definition"],
)
def test_candidate_that_does_not_define_scores_zero(candidate: str) -> None:
    r = run_tests(candidate, TESTS, _cfg(False))
    assert (r.status, r.score, r.passed) == ("candidate_error", 0.0, 0), r
    _check_contained(r)


@pytest.mark.parametrize(
    "candidate",
    [
        "import os\ndef add(a, b):\n    os._exit(0)\n",
        "import os, signal\ndef add(a, b):\n    os.abort()\n",
    ],
    ids=["os._exit", "abort"],
)
def test_early_exit_scores_zero(candidate: str) -> None:
    r = run_tests(candidate, TESTS, _cfg(False))
    assert (r.status, r.score) == ("crashed", 0.0), r
    _check_contained(r)


def test_printing_and_writing_inside_the_sandbox_is_fine() -> None:
    candidate = _d(
        """
        import os, tempfile
        print("P 0\\nP 1\\nDONE")  # stdout is not the result channel
        def add(a, b):
            with open("scratch.txt", "w") as f:
                f.write(str(a + b))
            with tempfile.NamedTemporaryFile("w", delete=False) as t:
                t.write("x")
            with open(os.path.expanduser("~/home.txt"), "w") as h:
                h.write("x")
            return int(open("scratch.txt").read())
        """
    )
    r = run_tests(candidate, TESTS, _cfg(False))
    assert (r.status, r.score) == ("ok", 1.0), r
    assert "DONE" in r.stdout_tail
    _check_contained(r)


def test_signal_protocol_registry_and_errors() -> None:
    signal = get_signal("unit_tests", timeout_s=FAST, memory_mb=256)
    assert isinstance(signal, QualitySignal)
    samples = [
        Sample("Write add.", "```python\ndef add(a, b):\n    return a + b\n```", "teacher", tests=TESTS),
        Sample("Write add.", "def add(a, b):\n    return abs(a) + b\n", "student", tests=TESTS),
    ]
    assert signal.score(samples) == pytest.approx([1.0, 2 / 3])
    assert UnitTestPassRate(max_workers=2, timeout_s=FAST).score(samples) == pytest.approx([1.0, 2 / 3])
    completion = [Sample("def add(a, b):\n", "    return a + b\n", "student", tests=TESTS)]
    assert UnitTestPassRate(prepend_prompt=True, timeout_s=FAST).score(completion) == [1.0]
    with pytest.raises(ValueError, match=r"sample 1 \(prompt 'no tests'\) has no tests"):
        signal.score([samples[0], Sample("no tests", "x", "student")])
    with pytest.raises(ValueError, match=r"sample 0 .* define no test"):
        signal.score([Sample("p", "x", "student", tests="x = 1")])
    with pytest.raises(ValueError, match=r"sample 0 .* do not parse"):
        signal.score([Sample("p", "x", "student", tests="assert (")])
    with pytest.raises(ValueError, match="timeout_s must be a positive"):
        SandboxConfig(timeout_s=0)
    with pytest.raises(ValueError, match="max_workers"):
        UnitTestPassRate(max_workers=0)


# --- hostile candidates ----------------------------------------------------------------------


@pytest.mark.parametrize("ns", NS_MODES)
def test_infinite_loop_is_killed_at_the_timeout(ns: bool) -> None:
    candidate = _d(
        """
        import signal
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        def add(a, b):
            while True:
                pass
        """
    )
    t0 = time.monotonic()
    r = run_tests(candidate, TESTS, _cfg(ns, timeout_s=1.0))
    wall = time.monotonic() - t0
    assert (r.status, r.score) == ("timeout", 0.0), r
    assert wall < 1.0 + 2.0, f"took {wall:.2f} s for a 1 s timeout"
    _check_contained(r)


@pytest.mark.parametrize("ns", NS_MODES)
def test_unbounded_allocation_hits_the_memory_limit(ns: bool) -> None:
    candidate = _d(
        """
        def add(a, b):
            hog = []
            while True:
                hog.append(bytearray(8 * 1024 * 1024))
        """
    )
    t0 = time.monotonic()
    r = run_tests(candidate, "assert add(1, 2) == 3\n", _cfg(ns, memory_mb=256))
    wall = time.monotonic() - t0
    assert r.score == 0.0
    assert r.status in ("ok", "crashed"), r  # MemoryError fails the test, or the process dies; no timeout
    assert any("MemoryError" in f for f in r.failures) or r.status == "crashed", r
    assert wall < FAST, f"memory limit not hit before the timeout ({wall:.2f} s)"
    _check_contained(r)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.parametrize("ns", NS_MODES)
def test_fork_is_blocked(ns: bool) -> None:
    candidate = _d(
        """
        import os, time
        def add(a, b):
            for _ in range(8):  # bounded: never a real fork bomb
                if os.fork() == 0:
                    time.sleep(60)
                    os._exit(0)
            return a + b
        """
    )
    r = run_tests(candidate, "assert add(1, 2) == 3\n", _cfg(ns))
    assert (r.status, r.score) == ("ok", 0.0), r
    assert any("os.fork blocked" in f for f in r.failures), r.failures
    _check_contained(r)


@pytest.mark.parametrize(
    "candidate",
    [
        "import subprocess\ndef add(a, b):\n    subprocess.run(['true'])\n    return a + b\n",
        "import os\ndef add(a, b):\n    os.system('true')\n    return a + b\n",
        "import os\ndef add(a, b):\n    os.kill(os.getppid(), 0)\n    return a + b\n",
        "def add(a, b):\n    import ctypes\n    return a + b\n",
        "import multiprocessing\ndef add(a, b):\n    multiprocessing.Process(target=print).start()\n",
    ],
    ids=["subprocess", "os.system", "kill-parent", "ctypes", "multiprocessing"],
)
def test_other_process_creation_is_blocked(candidate: str) -> None:
    r = run_tests(candidate, "assert add(1, 2) == 3\n", _cfg(False))
    assert r.score == 0.0, r
    assert r.status in ("ok", "candidate_error"), r
    assert any("blocked" in f for f in r.failures), r.failures
    _check_contained(r)


def test_forked_children_die_with_the_process_group() -> None:
    """With the fork block switched off, the process-group kill still reaps what the candidate forks."""
    candidate = _d(
        """
        import os, sys, time
        def add(a, b):
            for _ in range(4):  # bounded
                pid = os.fork()
                if pid == 0:
                    time.sleep(60)
                    os._exit(0)
                print("child", pid, flush=True)
            return a + b
        """
    )
    r = run_tests(candidate, "assert add(1, 2) == 3\n", _cfg(False, block_process_creation=False))
    pids = [int(line.split()[1]) for line in r.stdout_tail.splitlines() if line.startswith("child ")]
    if os.geteuid() != 0:  # RLIMIT_NPROC = 0 stops the forks themselves for a normal user
        assert pids == []
        assert r.score == 0.0
    else:
        assert len(pids) == 4, r
        assert r.score == 1.0  # forking is allowed in this configuration; the children must still die
        deadline = time.monotonic() + 2.0
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(p) for p in pids), f"children {pids} survived the group kill"
    _check_contained(r)


@pytest.mark.parametrize("ns", NS_MODES)
def test_writes_outside_the_sandbox_are_blocked(ns: bool, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    outside = tmp_path / "dir"
    outside.mkdir()
    attacks = {
        "open-w": f"open({str(tmp_path / 'pwned1.txt')!r}, 'w').write('x')",
        "open-a": f"open({str(victim)!r}, 'a').write('x')",
        "os.open": f"os.close(os.open({str(tmp_path / 'pwned2.txt')!r}, os.O_CREAT | os.O_WRONLY))",
        "pathlib": f"pathlib.Path({str(tmp_path / 'pwned3.txt')!r}).write_text('x')",
        "relative": "open('../../../' + " + repr(str(tmp_path / "pwned4.txt").lstrip("/")) + ", 'w')",
        "remove": f"os.remove({str(victim)!r})",
        "rename": f"os.rename({str(victim)!r}, 'stolen.txt')",
        "rmtree": f"shutil.rmtree({str(outside)!r})",
        "mkdir": f"os.mkdir({str(tmp_path / 'pwned5')!r})",
        "chmod": f"os.chmod({str(victim)!r}, 0o777)",
        "truncate": f"os.truncate({str(victim)!r}, 0)",
        "symlink": f"os.symlink({str(victim)!r}, 'link'); open('link', 'w').write('x')",
        "hardlink": f"os.link({str(victim)!r}, 'hard'); open('hard', 'w').write('x')",
        "dir_fd": (
            f"fd = os.open({str(outside)!r}, os.O_RDONLY); "
            "os.close(os.open('pwned6.txt', os.O_CREAT | os.O_WRONLY, dir_fd=fd))"
        ),
        "copy": f"shutil.copyfile('/etc/hostname', {str(tmp_path / 'pwned7.txt')!r})",
    }
    tests = "import os, pathlib, shutil\n" + "".join(
        f"def test_{name.replace('-', '_').replace('.', '_')}():\n    {code}\n"
        for name, code in attacks.items()
    )
    tests += "assert add(1, 2) == 3\n"  # the one honest test
    r = run_tests("def add(a, b):\n    return a + b\n", tests, _cfg(ns))
    assert r.status == "ok", r
    assert r.total == len(attacks) + 1
    assert r.passed == 1, r.failures  # only the honest test passes: every attack raised
    assert victim.read_text() == "keep me"
    assert oct(victim.stat().st_mode & 0o777) != "0o777"
    assert outside.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "victim.txt"]
    assert list(outside.iterdir()) == []
    _check_contained(r)


@pytest.mark.parametrize("ns", NS_MODES)
def test_environment_secrets_are_not_visible(ns: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASKD_TEST_SECRET", "hunter2-do-not-leak")
    tests = _d(
        """
        import os
        def test_env_is_minimal():
            assert "ASKD_TEST_SECRET" not in os.environ
            assert set(os.environ) <= {"PATH", "HOME", "TMPDIR", "LANG", "OMP_NUM_THREADS",
                                        "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "LC_CTYPE"}
            assert b"hunter2" not in open("/proc/self/environ", "rb").read()
        def test_home_is_the_sandbox():
            assert os.environ["HOME"] == os.getcwd()
        def test_parent_environ_unreadable():
            open("/proc/%d/environ" % os.getppid(), "rb").read()
        def test_init_environ_unreadable():
            open("/proc/1/environ", "rb").read()
        """
    )
    r = run_tests("", tests, _cfg(ns))
    assert r.status == "ok", r
    # the two reads of other processes' environments must fail; the checks of our own pass
    assert (r.passed, r.total) == (2, 4), r.failures
    assert all("blocked" in f for f in r.failures), r.failures
    assert "hunter2" not in r.stdout_tail + r.stderr_tail
    assert os.environ["ASKD_TEST_SECRET"] == "hunter2-do-not-leak"  # caller unaffected
    _check_contained(r)


def _listener() -> socket.socket:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.setblocking(False)
    return srv


def _connection_arrived(srv: socket.socket) -> bool:
    readable, _, _ = select.select([srv], [], [], 0.3)
    return bool(readable)


def _socket_candidate(port: int) -> str:
    return _d(
        f"""
        import socket
        def connect():
            s = socket.create_connection(("127.0.0.1", {port}), timeout=1)
            s.sendall(b"leak")
            s.close()
            return True
        """
    )


SOCKET_TESTS = _d(
    """
    import socket
    assert connect()
    def test_dns():
        socket.getaddrinfo("localhost", 80)
    def test_udp():
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", 9))
    def test_unix():
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    """
)


@pytest.mark.parametrize("ns", NS_MODES)
def test_sockets_are_blocked(ns: bool) -> None:
    srv = _listener()
    try:
        r = run_tests(_socket_candidate(srv.getsockname()[1]), SOCKET_TESTS, _cfg(ns))
        assert not _connection_arrived(srv), "the candidate reached the listening socket"
    finally:
        srv.close()
    assert (r.status, r.passed, r.total) == ("ok", 0, 4), r
    _check_contained(r)


def test_socket_detection_can_fail() -> None:
    """Control: with every network layer off, the same candidate does connect (the check above is real)."""
    srv = _listener()
    try:
        cfg = _cfg(False, block_network=False)
        r = run_tests(_socket_candidate(srv.getsockname()[1]), "assert connect()\n", cfg)
        assert (r.status, r.score) == ("ok", 1.0), r
        assert _connection_arrived(srv)
    finally:
        srv.close()


@pytest.mark.skipif(not namespaces_available(), reason="unshare does not work here")
def test_network_namespace_alone_blocks_tcp() -> None:
    """Layer check: with the audit-hook network block off, the namespace alone stops it."""
    srv = _listener()
    try:
        cfg = _cfg(True, block_network=False)
        r = run_tests(_socket_candidate(srv.getsockname()[1]), "assert connect()\n", cfg)
        assert not _connection_arrived(srv)
    finally:
        srv.close()
    assert (r.status, r.score, r.namespaces) == ("ok", 0.0, True), r
    assert any("Error" in f for f in r.failures), r.failures  # an OSError from connect, not a hook block
    assert not any("blocked" in f for f in r.failures), r.failures


def test_limits_cannot_be_lifted() -> None:
    candidate = _d(
        """
        import resource
        def lift():
            resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        """
    )
    r = run_tests(candidate, "lift()\nassert True\n", _cfg(False))
    assert (r.status, r.passed, r.total) == ("ok", 0, 1), r
    assert any("setup failed" in f and "resource.setrlimit blocked" in f for f in r.failures), r.failures


def test_huge_output_is_bounded() -> None:
    candidate = "import sys\ndef add(a, b):\n    while True:\n        sys.stdout.write('x' * 65536)\n"
    r = run_tests(candidate, "assert add(1, 2) == 3\n", _cfg(False, file_size_mb=1))
    assert r.score == 0.0
    assert r.status != "timeout", r  # stopped by RLIMIT_FSIZE, not by the clock
    assert len(r.stdout_tail) <= 4000
    _check_contained(r)


def test_caller_is_unaffected_by_a_batch_of_hostile_samples(tmp_path: Path) -> None:
    cwd, env = os.getcwd(), dict(os.environ)
    hostile = [
        "def add(a, b):\n    while True:\n        pass\n",
        "import os\ndef add(a, b):\n    os.kill(os.getppid(), 9)\n",
        f"def add(a, b):\n    open({str(tmp_path / 'x')!r}, 'w')\n    return a + b\n",
        "def add(a, b):\n    return a + b\n",
    ]
    samples = [Sample("p", code, "student", tests="assert add(1, 2) == 3\n") for code in hostile]
    t0 = time.monotonic()
    scores = UnitTestPassRate(timeout_s=1.0, memory_mb=256, max_workers=2).score(samples)
    assert scores == [0.0, 0.0, 0.0, 1.0]
    assert time.monotonic() - t0 < 6.0
    assert (os.getcwd(), dict(os.environ)) == (cwd, env)
    assert list(tmp_path.iterdir()) == []
    assert sys.stdin is not None


def test_use_namespaces_true_requires_unshare() -> None:
    if namespaces_available():
        r = run_tests("def add(a, b):\n    return a + b\n", TESTS, _cfg(True))
        assert (r.namespaces, r.score) == (True, 1.0)
    else:
        with pytest.raises(RuntimeError, match="unshare"):
            run_tests("", TESTS, _cfg(True))


# --- the probe behind docs/reliability.md §5 --------------------------------------------------


def test_sandbox_probe_subset(tmp_path: Path) -> None:
    import json

    from askd_ref.cli.sandbox_probe import main

    out = tmp_path / "probe.json"
    rc = main(["--cases", "tcp,write_open,fork_unhooked,env_secret", "--modes", "no-ns", "--out", str(out)])
    report = json.loads(out.read_text())
    assert rc == 0, report
    assert (report["runs"], report["contained"]) == (4, 4)
    fork_row = next(r for r in report["rows"] if r["case"] == "fork_unhooked")
    if os.geteuid() == 0:  # as root the forks happen (NPROC is ignored): the check must have seen them
        assert fork_row["children_seen"] == 4, fork_row


@pytest.mark.slow
def test_sandbox_probe_full_catalogue(tmp_path: Path) -> None:
    from askd_ref.cli.sandbox_probe import CASES, run_probe

    report = run_probe()
    escaped = [r for r in report["rows"] if not r["contained"]]
    assert report["contained"] == report["runs"] >= len(CASES), escaped


# The classifier of a run's result lines, without a process.


def _classify(lines: list[str], *, returncode: int | None = 0, timed_out: bool = False) -> RunOutcome:
    return classify_run(lines, total=2, returncode=returncode, timed_out=timed_out, timeout_s=5.0)


def test_classify_counts_each_test_once_and_only_within_range() -> None:
    lines = ["READY", "P 0", "P 0", "F 1 AssertionError: no", "P 1", "P 7", "P x", "DONE"]
    assert _classify(lines) == RunOutcome("ok", 1, ("test 1: AssertionError: no",))


@pytest.mark.parametrize(
    ("lines", "returncode", "timed_out", "status", "last_failure"),
    [
        (["READY", "P 0"], None, True, "timeout", "timed out after 5 s"),
        (["READY", "P 0", "P 1"], -9, False, "crashed", "exited early with status -9"),
        (["READY", "P 0", "P 1", "DONE"], 1, False, "crashed", "exited early with status 1"),
        (
            ["READY", "CANDIDATE_ERROR NameError: x", "F 0 NameError", "DONE"],
            0,
            False,
            "candidate_error",
            "test 0: NameError",
        ),
    ],
)
def test_classify_statuses(
    lines: list[str], returncode: int | None, timed_out: bool, status: str, last_failure: str
) -> None:
    out = _classify(lines, returncode=returncode, timed_out=timed_out)
    assert out.status == status
    assert out.passed == 0  # only an "ok" run scores
    assert out.failures[-1] == last_failure


def test_classify_raises_when_the_sandbox_never_started() -> None:
    with pytest.raises(RuntimeError, match="failed to start: HARNESS_ERROR rlimit"):
        _classify(["HARNESS_ERROR rlimit RLIMIT_AS refused"], returncode=1)
    with pytest.raises(RuntimeError, match="exit status 2"):
        _classify([], returncode=2)
    assert _classify([], returncode=None, timed_out=True).status == "timeout"
