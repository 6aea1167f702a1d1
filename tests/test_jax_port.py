"""The JAX port in examples/ (a second implementation that never imports askd_ref) passes the runner.

It runs under ``--strict``, so every function, value, gradient (``jax.grad`` through the
``value_and_grad`` hook), diagnostic and sample count of both golden-vector files is checked.
"""

import importlib.util
import re
from pathlib import Path

import pytest

from askd_ref.porting import conformance as cf

ROOT = Path(__file__).resolve().parents[1]
PORT = ROOT / "examples" / "jax_port.py"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("jax") is None,
    reason="jax is not installed (it is in the dev extra: pip install -e .[dev])",
)


def test_the_port_is_independent_of_askd_ref() -> None:
    source = PORT.read_text(encoding="utf-8")
    assert not re.search(r"^\s*(import|from)\s+askd_ref", source, re.M)


def _persistent_compilation_cache() -> None:
    """Most of the run is XLA compiling each small operation once per shape (about a minute of
    CPU on a fresh clone); a cache in the ignored ``.jax_cache/`` makes later runs about 3× faster."""
    import jax

    jax.config.update("jax_compilation_cache_dir", str(ROOT / ".jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def test_jax_port_passes_v2_and_v1_strictly() -> None:
    _persistent_compilation_cache()
    port = cf.load_impl(str(PORT))
    for version in (2, 1):  # v2 first: v1's inputs are a subset, so its run reuses JAX's compilations
        vectors = cf.load_vectors(cf.default_vectors_path(version))
        report = cf.run_conformance(port, vectors, strict=True)
        assert report.ok, cf.format_report(report)
        assert len(report.results) == len(vectors["cases"])
        assert not report.not_provided
        assert not report.not_implemented
        grads = sum(
            c.what.startswith("grad[") and c.status == cf.PASS for r in report.results for c in r.checks
        )
        assert grads > 250
