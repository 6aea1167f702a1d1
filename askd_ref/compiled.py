"""The compiled row kernel of the chunked path: ``chunked_loss(..., kernel="compiled")``.

On CPU the element-wise work of a chunk (two log-softmaxes, the divergence and its logit
gradient) costs a dozen vectorised torch passes over every (token × vocab) logit block, each with
its dispatch; at vocab 151936 and 1024 tokens that was 10–20 % of the projection matmuls. The
C kernel in ``_compiled.c`` does the same work per row in three or four passes with no
temporaries: one for both log-sum-exps, one for the divergence and its row sums, one for the
gradient. It computes the closed forms of the eager ``"fused"`` kernel (see
``askd_ref.chunked._fused_kernel``), which stays the reference; ``tests/test_compiled.py``
checks the two against each other and against autograd through the library's divergences.

It is built at first use with the system C compiler (``$CC``, else ``cc``, ``gcc`` or ``clang``)
as ``-O3 -march=native`` and cached under ``$ASKD_REF_CACHE`` (default
``~/.cache/askd-ref``), keyed by the source, the compiler and the CPU; a build takes about a
second. It runs float32 CPU tensors only and splits a chunk's rows over
``torch.get_num_threads()`` POSIX threads. Without a working compiler :func:`load` raises
:class:`CompiledKernelUnavailable` with the compiler's message; the eager kernels need nothing.

Numerics: exp and log(1 + u) are the cephes ``expf``/``logf`` polynomials (at most 1.5 ulp
each in ``tests/test_compiled.py``); exp has no upper clamp (valid up to 88; the kernel's arguments
are all ≤ 0) and flushes to 0 below e^−87.34, the smallest normal float, where ``torch.exp`` returns
subnormals; row sums accumulate in 16 lanes. Values and gradients agree with
the eager kernel to the float32 rows of the tolerance table.
"""

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Final

import torch
from torch import Tensor

from askd_ref.io import atomic_write_bytes

__all__ = ["SOURCE", "CompiledKernelUnavailable", "available", "has_compiler", "load", "rows"]

#: The C source, shipped with the package.
SOURCE: Final[Path] = Path(__file__).with_name("_compiled.c")
#: Compiler flags. No -ffast-math: the kernel relies on IEEE infinities and NaN propagation;
#: -fno-trapping-math and -fno-math-errno only let the compiler vectorise the branch-free code, and
#: -ffp-contract=fast lets it fuse the polynomials' multiply-adds (ISO C modes such as -std=c99
#: turn that off, which made the kernel 10–35 % slower here).
FLAGS: Final[tuple[str, ...]] = (
    "-O3",
    "-march=native",
    "-ffp-contract=fast",
    "-fno-trapping-math",
    "-fno-math-errno",
    "-shared",
    "-fPIC",
    "-pthread",
)
#: The version of the C interface this module calls (``askd_abi_version()``).
_ABI: Final[int] = 1

_P = ctypes.c_void_p
_I64 = ctypes.c_int64
_INT = ctypes.c_int


class CompiledKernelUnavailable(RuntimeError):
    """The compiled kernel cannot be built or loaded here (no C compiler, a failed build)."""


_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_error: CompiledKernelUnavailable | None = None


def cache_dir() -> Path:
    """Where built kernels are kept: ``$ASKD_REF_CACHE``, else ``$XDG_CACHE_HOME/askd-ref``, else
    ``~/.cache/askd-ref`` (:func:`build` falls back to the temporary directory when it cannot
    write there)."""
    if env := os.environ.get("ASKD_REF_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "askd-ref"


def find_compiler() -> str:
    """``$CC`` if set, else the first of ``cc``, ``gcc``, ``clang`` on ``PATH``."""
    if cc := os.environ.get("CC"):
        return cc
    for name in ("cc", "gcc", "clang"):
        if path := shutil.which(name):
            return path
    raise CompiledKernelUnavailable("kernel='compiled' needs a C compiler: none of $CC, cc, gcc, clang found")


def has_compiler() -> bool:
    """Whether :func:`find_compiler` finds one (builds nothing; a found compiler may still fail)."""
    try:
        find_compiler()
    except CompiledKernelUnavailable:
        return False
    return True


def _cpu_signature() -> str:
    """What ``-march=native`` depends on: the CPU model and its feature flags (Linux), else the
    platform's processor string."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return f"{platform.machine()} {platform.processor()}"
    wanted = ("model name", "flags", "Features", "CPU part")
    return "\n".join(sorted({ln for ln in lines if ln.split(":")[0].strip() in wanted}))


def build(compiler: str | None = None, directory: Path | None = None) -> Path:
    """Compile ``_compiled.c`` into ``directory`` (default :func:`cache_dir`) unless a build of the
    same source, compiler and CPU is there; returns the shared library's path.

    The compiler writes into a private temporary directory; the library is then copied into place
    with :func:`askd_ref.io.atomic_write_bytes`, so concurrent builds (several processes, several
    threads) never see a partial file.
    """
    cc = compiler or find_compiler()
    out_dir = directory or cache_dir()
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CompiledKernelUnavailable(
            f"kernel='compiled': cannot run the C compiler {cc!r}: {exc}"
        ) from exc
    if version.returncode != 0:
        raise CompiledKernelUnavailable(
            f"kernel='compiled': {cc!r} --version failed: {version.stderr.strip()}"
        )
    key = hashlib.sha256(
        b"\0".join(
            [
                SOURCE.read_bytes(),
                " ".join(FLAGS).encode(),
                version.stdout.encode(),
                _cpu_signature().encode(),
            ]
        )
    ).hexdigest()[:16]
    name = f"askd_compiled-{key}.so"
    uid = os.getuid() if hasattr(os, "getuid") else 0
    fallback = Path(tempfile.gettempdir()) / f"askd-ref-{uid}"
    candidates = (out_dir,) if directory is not None else (out_dir, fallback)
    errors = []
    for candidate in candidates:  # the first that has the build, or else can be written to
        if (candidate / name).exists():
            return candidate / name
        try:
            candidate.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            errors.append(f"{candidate}: {exc}")
            continue
        if os.access(candidate, os.W_OK | os.X_OK):
            break
        errors.append(f"{candidate}: not writable")
    else:
        raise CompiledKernelUnavailable(f"kernel='compiled': cannot write to {'; '.join(errors)}")
    target = candidate / name
    try:
        with tempfile.TemporaryDirectory(prefix="askd_compiled-") as tmp:
            built = Path(tmp) / name
            command = [cc, *FLAGS, str(SOURCE), "-o", str(built), "-lm"]
            proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
            if proc.returncode != 0:
                raise CompiledKernelUnavailable(
                    f"kernel='compiled': compiling {SOURCE.name} with {cc!r} failed:\n{proc.stderr.strip()}"
                )
            data = built.read_bytes()
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CompiledKernelUnavailable(f"kernel='compiled': compiling with {cc!r} failed: {exc}") from exc
    try:
        atomic_write_bytes(target, data)
    except OSError as exc:
        raise CompiledKernelUnavailable(f"kernel='compiled': cannot write to {target}: {exc}") from exc
    return target


def _bind(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    lib.askd_abi_version.restype = _INT
    lib.askd_abi_version.argtypes = []
    if lib.askd_abi_version() != _ABI:
        raise CompiledKernelUnavailable(
            f"kernel='compiled': {path} has interface {lib.askd_abi_version()}, not {_ABI}"
        )
    lib.askd_rows.restype = _INT
    lib.askd_rows.argtypes = [_I64, _I64, _I64, _P, _P, _P, _INT, _P, _P, _P, _P, _INT, _P, _P, _P, _INT]
    for name in ("askd_exp", "askd_log1p_unit"):
        getattr(lib, name).argtypes = [_I64, _P, _P]
        getattr(lib, name).restype = None
    lib.askd_logaddexp.argtypes = [_I64, _P, _P, _P, _P, _P]
    lib.askd_logaddexp.restype = None
    lib.askd_lse.argtypes = [_I64, _I64, _P, _P, _P]
    lib.askd_lse.restype = None
    return lib


def load() -> ctypes.CDLL:
    """The built kernel library (built and loaded once per process); raises
    :class:`CompiledKernelUnavailable`, with the reason, when it cannot be had."""
    global _lib, _error
    with _lock:
        if _lib is not None:
            return _lib
        if _error is not None:
            raise _error
        try:
            _lib = _bind(build())
        except CompiledKernelUnavailable as exc:
            _error = exc
            raise
        except OSError as exc:  # ctypes could not load the library
            _error = CompiledKernelUnavailable(f"kernel='compiled': loading the built kernel failed: {exc}")
            raise _error from exc
        return _lib


def available() -> bool:
    """Whether ``kernel="compiled"`` can run here (builds the kernel on first call)."""
    try:
        load()
    except CompiledKernelUnavailable:
        return False
    return True


def _f32(name: str, x: Tensor, n: int) -> None:
    if x.dtype != torch.float32 or x.device.type != "cpu" or x.numel() != n or not x.is_contiguous():
        raise ValueError(
            f"{name}: expected {n} contiguous float32 CPU values, "
            f"got {tuple(x.shape)} {x.dtype} on {x.device}"
        )


def rows(
    code: int,
    s: Tensor,
    t: Tensor,
    ids: Tensor,
    param: Tensor,
    log_param: Tensor,
    log1m_param: Tensor,
    weight: Tensor,
    want_grad: bool,
    s_tok: Tensor,
    t_tok: Tensor,
    values: Tensor,
) -> None:
    """One divergence on rows of logits, in place: the compiled counterpart of a block's
    log-softmaxes, token gathers and ``_fused_kernel`` in ``askd_ref.chunked``.

    Args:
        code: the :class:`~askd_ref.divergences.Divergence` of every row.
        s, t: (n, V) float32 student and teacher logits, rows ``stride(0)`` apart, unit stride along
            the vocabulary; ``s`` ends as the logit gradient w·∂D/∂z when ``want_grad`` (else
            undefined), ``t`` as scratch.
        ids: (n,) int64 target ids in [0, V).
        param, log_param, log1m_param: (n,) α (β for the generalised JSD), log α and log(1 − α).
        weight: (n,) loss weight w of each row.
        s_tok, t_tok, values: (n,) outputs: log q(id), log p(id) and the divergence value.
    """
    lib = load()
    if s.dim() != 2 or t.shape != s.shape or s.stride() != t.stride() or s.stride(1) != 1:
        raise ValueError(
            f"s, t: expected two (rows, vocab) tensors with equal strides and unit stride along the "
            f"vocabulary, got {tuple(s.shape)} {s.stride()} and {tuple(t.shape)} {t.stride()}"
        )
    n, vocab = s.shape
    for name, x in (("s", s), ("t", t)):
        if x.dtype != torch.float32 or x.device.type != "cpu":
            raise ValueError(
                f"{name}: kernel='compiled' runs float32 CPU tensors, got {x.dtype} on {x.device}"
            )
    if ids.dtype != torch.int64 or ids.numel() != n or not ids.is_contiguous():
        raise ValueError(f"ids: expected {n} contiguous int64 values, got {tuple(ids.shape)} {ids.dtype}")
    for name, x in (
        ("param", param),
        ("log_param", log_param),
        ("log1m_param", log1m_param),
        ("weight", weight),
        ("s_tok", s_tok),
        ("t_tok", t_tok),
        ("values", values),
    ):
        _f32(name, x, n)
    if n == 0:
        return
    rc = lib.askd_rows(
        n,
        vocab,
        s.stride(0),
        s.data_ptr(),
        t.data_ptr(),
        ids.data_ptr(),
        int(code),
        param.data_ptr(),
        log_param.data_ptr(),
        log1m_param.data_ptr(),
        weight.data_ptr(),
        int(want_grad),
        s_tok.data_ptr(),
        t_tok.data_ptr(),
        values.data_ptr(),
        torch.get_num_threads(),
    )
    if rc != 0:
        raise ValueError(
            f"askd_rows rejected its arguments (code {code}, ids in [0, {vocab}), vocab {vocab})"
        )
