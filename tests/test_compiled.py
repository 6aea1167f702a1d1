"""The compiled row kernel (``kernel="compiled"``, :mod:`askd_ref.compiled`).

Three layers, each against something written differently:

* its building blocks (exp, log(1 + u), logaddexp with its ratios, the one-pass log-sum-exp)
  against NumPy in float64, in ulps, over dense grids of their whole input ranges;
* one call on rows of logits against the eager ``"fused"`` kernel evaluated in float64 on the same
  float32 logits (torch ops, block by block), for every divergence, vocabulary sizes around the
  16-lane and 1024-element pieces, with and without the gradient, and for 1 to 3 threads;
* ``chunked_loss(kernel="compiled")`` against the full-logit path is in ``tests/test_chunked.py``
  (every method, float32 and bf16, extreme inputs).

Tests skip, saying so, only where no C compiler is on the machine; a compiler that fails to
build the kernel fails them.
"""

import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

from askd_ref import compiled
from askd_ref.chunked import _fused_kernel
from askd_ref.divergences import Divergence
from askd_ref.porting.tolerances import assert_close, tolerance

HAVE_CC = compiled.has_compiler()

pytestmark = pytest.mark.skipif(not HAVE_CC, reason="no C compiler ($CC, cc, gcc, clang) on this machine")


@pytest.fixture(scope="module")
def lib() -> Any:
    return compiled.load()


def _unary(lib: Any, name: str, x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.empty_like(x)
    getattr(lib, name)(x.size, x.ctypes.data, y.ctypes.data)
    return y


def _ulps(y: np.ndarray, exact: np.ndarray) -> float:
    """max |y − exact| in units of the float32 spacing at exact."""
    spacing = np.spacing(np.abs(exact.astype(np.float32))).astype(np.float64)
    return float((np.abs(y.astype(np.float64) - exact) / spacing).max())


def test_exp_within_1_5_ulp_and_its_edges(lib: Any) -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            np.linspace(-87.3, 88.0, 2_000_001, dtype=np.float32),
            rng.uniform(-87.3, 0, 10**6).astype(np.float32),
            -np.logspace(-38, 1, 100_000).astype(np.float32),  # down to the tiniest arguments
        ]
    )
    assert _ulps(_unary(lib, "askd_exp", x), np.exp(x.astype(np.float64))) <= 1.5
    edges = _unary(lib, "askd_exp", np.array([0.0, -0.0, -87.34, -88.0, -1e4, -np.inf, np.nan], np.float32))
    assert (edges[:2] == 1.0).all()
    assert (edges[2:6] == 0.0).all()  # below the smallest normal: 0, not a subnormal
    assert np.isnan(edges[6])


def test_log1p_unit_within_1_5_ulp_down_to_tiny_arguments(lib: Any) -> None:
    """log(1 + u) on [0, 1] without rounding 1 + u: relative accuracy holds for u near 0 too."""
    rng = np.random.default_rng(1)
    u = np.concatenate(
        [
            np.linspace(0, 1, 2_000_001, dtype=np.float32),
            np.exp(rng.uniform(np.log(1e-38), 0, 10**6)).astype(np.float32),
        ]
    )
    assert _ulps(_unary(lib, "askd_log1p_unit", u[u > 0]), np.log1p(u[u > 0].astype(np.float64))) <= 1.5
    assert _unary(lib, "askd_log1p_unit", np.zeros(1, np.float32))[0] == 0.0


def test_logaddexp_and_its_two_ratios(lib: Any) -> None:
    """y = log(eˣ + eᶜ), r = eˣ/(eˣ + eᶜ), rc = 1 − r, against float64, x and c from −1000 to 100."""
    rng = np.random.default_rng(2)
    n = 10**6
    x = rng.uniform(-1000, 100, n).astype(np.float32)
    c = np.where(rng.random(n) < 0.5, x + rng.normal(0, 3, n), rng.uniform(-1000, 100, n)).astype(np.float32)
    y, r, rc = (np.empty(n, np.float32) for _ in range(3))
    lib.askd_logaddexp(n, x.ctypes.data, c.ctypes.data, y.ctypes.data, r.ctypes.data, rc.ctypes.data)
    x64, c64 = x.astype(np.float64), c.astype(np.float64)
    y64 = np.logaddexp(x64, c64)
    assert np.abs(y - y64).max() <= 4 * np.spacing(np.maximum(np.abs(y64), 1.0).astype(np.float32)).max()
    # The ratios are functions of d = x − c, which float32 rounds by up to |d|·2⁻²⁴ before any
    # exp is taken (the eager kernels too): relative error ≤ (4 + |d|)·2⁻²³.
    bound = (4 + np.abs(x64 - c64)) * 2.0**-23
    for mine, exact in ((r, np.exp(x64 - y64)), (rc, np.exp(c64 - y64))):
        big = exact > 1e-30  # below, both are 0 or subnormal-sized
        rel = np.abs(mine[big] - exact[big]) / exact[big]
        assert (rel <= bound[big]).all(), float((rel / bound[big]).max())
    assert np.abs(r.astype(np.float64) + rc - 1).max() <= 2**-22


@pytest.mark.parametrize("vocab", [1, 15, 16, 17, 1023, 1024, 1025, 5000])
def test_one_pass_log_sum_exp(lib: Any, vocab: int) -> None:
    """max and log Σ exp(x − max), with the piecewise rescaling, against float64."""
    g = torch.Generator().manual_seed(vocab)
    x = (torch.randn(6, vocab, generator=g) * torch.tensor([1.0, 10, 60, 1, 1, 1])[:, None]).contiguous()
    x[3, :] += torch.linspace(0, 30, vocab)  # the max grows piece after piece (rescaling)
    x[4, :] -= torch.linspace(0, 30, vocab)  # the max sits in the first piece
    x[5, :] = -3.0  # all equal
    m, ls = torch.empty(6), torch.empty(6)
    lib.askd_lse(6, vocab, x.data_ptr(), m.data_ptr(), ls.data_ptr())
    assert torch.equal(m, x.max(-1).values)
    exact = torch.logsumexp(x.double(), -1)
    assert_close((m.double() + ls.double()), exact, tolerance(torch.float32, "value"), what="log-sum-exp")


def _inputs(n: int, vocab: int, scale: float, seed: int) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, generator=g) * 0.9 + 0.05
    a[0] = 1e-3
    if n > 1:
        a[1] = 0.999
    if n > 2:
        a[2] = 1e-9  # within 2⁻²⁴ of 0: the kernel's path with both exponentials
    if n > 3:
        a[3] = 1.0  # the endpoint: that path too
    return {
        "s": torch.randn(n, vocab, generator=g) * scale,
        "t": torch.randn(n, vocab, generator=g) * scale,
        "ids": torch.randint(0, vocab, (n,), generator=g),
        "a": a,
        "w": torch.rand(n, generator=g) + 0.5,
    }


def _eager(code: Divergence, x: dict[str, Tensor], dtype: torch.dtype) -> tuple[Tensor, ...]:
    """The eager fused kernel in ``dtype`` on the same logits: (s_tok, t_tok, values, ∂/∂z)."""
    s = torch.log_softmax(x["s"].to(dtype), -1)
    t = torch.log_softmax(x["t"].to(dtype), -1)
    ids = x["ids"][:, None]
    s_tok, t_tok = s.gather(1, ids).view(-1), t.gather(1, ids).view(-1)
    a = x["a"].to(dtype)[:, None]
    scratch = torch.empty_like(s), torch.empty_like(s)
    values = _fused_kernel(
        int(code), s, t, *scratch, a, a.log(), (-a).log1p(), x["w"].to(dtype)[:, None], True
    )
    return s_tok, t_tok, values, s


def _compiled(code: Divergence, x: dict[str, Tensor], want_grad: bool = True) -> tuple[Tensor, ...]:
    s, t = x["s"].clone(), x["t"].clone()
    n = s.shape[0]
    a = x["a"]
    out = [torch.empty(n) for _ in range(3)]
    compiled.rows(int(code), s, t, x["ids"], a, a.log(), (-a).log1p(), x["w"], want_grad, *out)
    return (*out, s)


@pytest.mark.usefixtures("lib")
@pytest.mark.parametrize("vocab", [1, 7, 16, 17, 1024, 1031, 3000])
@pytest.mark.parametrize("code", list(Divergence), ids=lambda d: d.name)
def test_rows_equal_the_fused_kernel_in_float64(code: Divergence, vocab: int) -> None:
    x = _inputs(5, vocab, 3.0, seed=vocab)
    mine = _compiled(code, x)
    exact = _eager(code, x, torch.float64)
    for name, a, b in zip(
        ("student token", "teacher token", "value", "logit gradient"), mine, exact, strict=True
    ):
        quantity = "grad" if name == "logit gradient" else "value"
        assert_close(a.double(), b, tolerance(torch.float32, quantity), what=f"{code.name} {name}")


@pytest.mark.usefixtures("lib")
@pytest.mark.parametrize("code", list(Divergence), ids=lambda d: d.name)
def test_rows_at_extreme_logits_no_worse_than_the_eager_float32_kernel(code: Divergence) -> None:
    """Logits of scale 60 (log-probs down to about −10³, peaked rows): float32 cancels, in both
    kernels; the compiled one's error against float64 stays within twice the eager one's (or the
    table)."""
    x = _inputs(4, 2000, 60.0, seed=11)
    mine, theirs = _compiled(code, x), _eager(code, x, torch.float32)
    exact = _eager(code, x, torch.float64)
    for a, b, e, quantity in zip(mine, theirs, exact, ("value", "value", "value", "grad"), strict=True):
        tol = tolerance(torch.float32, quantity)
        scale = tol.atol + tol.rtol * e.abs()
        r_mine = float(((a.double() - e).abs() / scale).max())
        r_eager = float(((b.double() - e).abs() / scale).max())
        assert r_mine <= max(1.0, 2.0 * r_eager), (quantity, r_mine, r_eager)


@pytest.mark.usefixtures("lib")
@pytest.mark.parametrize("code", list(Divergence), ids=lambda d: d.name)
def test_values_without_gradient_and_thread_counts_are_bitwise_equal(code: Divergence) -> None:
    """Each row runs on one thread in a fixed order, so the thread count changes nothing, and the
    values do not depend on whether the gradient is formed."""
    x = _inputs(5, 1500, 3.0, seed=3)
    threads = torch.get_num_threads()
    try:
        runs = []
        for n_threads in (1, 2, 3, 8):
            torch.set_num_threads(n_threads)
            runs.append(_compiled(code, x))
    finally:
        torch.set_num_threads(threads)
    for other in runs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(runs[0], other, strict=True))
    no_grad = _compiled(code, x, want_grad=False)
    assert all(torch.equal(a, b) for a, b in zip(runs[0][:3], no_grad[:3], strict=True))


@pytest.mark.usefixtures("lib")
def test_strided_rows_of_a_larger_buffer() -> None:
    """Rows of a chunk buffer are views with the buffer's row stride; the rows around them are
    not touched."""
    x = _inputs(6, 300, 2.0, seed=5)
    big_s = torch.full((8, 300), 7.0)
    big_t = torch.full((8, 300), 7.0)
    big_s[1:7], big_t[1:7] = x["s"], x["t"]
    a = x["a"]
    out = [torch.empty(6) for _ in range(3)]
    args = (x["ids"], a, a.log(), (-a).log1p(), x["w"], True, *out)
    compiled.rows(int(Divergence.SKL), big_s[1:7], big_t[1:7], *args)
    ref = _compiled(Divergence.SKL, x)
    assert torch.equal(big_s[1:7], ref[3])
    assert all(torch.equal(o, r) for o, r in zip(out, ref[:3], strict=True))
    assert bool((big_s[0] == 7).all() and (big_s[7] == 7).all() and (big_t[7] == 7).all())


@pytest.mark.usefixtures("lib")
def test_bad_arguments_are_named() -> None:
    x = _inputs(3, 10, 1.0, seed=0)
    a, out = x["a"], [torch.empty(3) for _ in range(3)]
    args = (x["ids"], a, a.log(), (-a).log1p(), x["w"], True, *out)
    with pytest.raises(ValueError, match="s: kernel='compiled' runs float32 CPU tensors"):
        compiled.rows(0, x["s"].double(), x["t"].double(), *args)
    with pytest.raises(ValueError, match="s, t: expected two"):
        compiled.rows(0, x["s"], x["t"][:, :5], *args)
    with pytest.raises(ValueError, match="ids: expected 3 contiguous int64"):
        compiled.rows(0, x["s"], x["t"], x["ids"].int(), *args[1:])
    with pytest.raises(ValueError, match="weight: expected 3 contiguous float32"):
        compiled.rows(0, x["s"], x["t"], *args[:4], x["w"][:2], *args[5:])
    with pytest.raises(ValueError, match="askd_rows rejected"):
        compiled.rows(0, x["s"], x["t"], x["ids"] + 100, *args[1:])


def test_a_missing_compiler_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(compiled.CompiledKernelUnavailable, match="cannot run the C compiler"):
        compiled.build(compiler=str(tmp_path / "no-such-cc"), directory=tmp_path)
    with pytest.raises(compiled.CompiledKernelUnavailable, match="--version failed"):
        compiled.build(compiler="false", directory=tmp_path)


def test_concurrent_builds_into_one_directory(tmp_path: Path) -> None:
    """Builds write a temporary file and rename it into place: four threads building into an
    empty directory all get one complete library."""
    paths: list[Path] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            paths.append(compiled.build(directory=tmp_path))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert len(set(paths)) == 1
    assert [p.name for p in tmp_path.iterdir()] == [paths[0].name]  # no temporary left behind
    assert compiled._bind(paths[0]).askd_abi_version() == 1


def test_chunked_loss_says_why_the_compiled_kernel_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the kernel cannot be built, ``chunked_loss(kernel="compiled")`` raises the reason
    before any work; the eager kernels are unaffected."""
    from askd_ref import chunked_loss

    g = torch.Generator().manual_seed(0)
    kw: dict[str, Any] = {
        "student_hidden": torch.randn(2, 3, 4, generator=g),
        "student_weight": torch.randn(11, 4, generator=g),
        "teacher_hidden": torch.randn(2, 3, 4, generator=g),
        "teacher_weight": torch.randn(11, 4, generator=g),
        "target_ids": torch.randint(0, 11, (2, 3), generator=g),
        "mask": torch.ones(2, 3, dtype=torch.bool),
        "is_tgo": torch.tensor([True, False]),
        "quality": torch.tensor([0.3, 0.8]),
    }
    reason = compiled.CompiledKernelUnavailable("kernel='compiled' needs a C compiler: none found")
    monkeypatch.setattr(compiled, "_lib", None)
    monkeypatch.setattr(compiled, "_error", reason)
    with pytest.raises(compiled.CompiledKernelUnavailable, match="needs a C compiler"):
        chunked_loss("askd-dense", **kw, kernel="compiled")
    assert not compiled.available()
    assert torch.isfinite(chunked_loss("askd-dense", **kw).loss)


def test_an_unwritable_cache_falls_back_to_the_temporary_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASKD_REF_CACHE", "/proc/askd-ref-cannot-be-created")
    path = compiled.build()
    assert Path(path).parent.parent == Path(tempfile.gettempdir())
    assert compiled._bind(path).askd_abi_version() == 1
    with pytest.raises(compiled.CompiledKernelUnavailable, match="cannot write to /proc"):
        compiled.build(directory=Path("/proc/askd-ref-cannot-be-created"))
