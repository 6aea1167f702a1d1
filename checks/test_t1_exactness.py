"""T1: with fixed α, E11/E12 (askd_ref's own tgo_loss / sgo_loss, normalize="sum") give the
exact gradients of SKL_α,seq and SRKL_α,seq — by exact enumeration of tabular autoregressive
models (vocab ≤ 4, length ≤ 3), to ≤ 1e-8."""

from hypothesis import given, settings
from hypothesis import strategies as st

from checks.exact import BIAS_MARGIN, EXACT_ATOL, NEGATIVE_INSTANCES, instance, t1_errors

models = st.tuples(st.integers(2, 4), st.integers(1, 3), st.integers(0, 2**20), st.floats(0.3, 3.0))
alphas = st.floats(0.02, 0.98)


def _describe(model: tuple[int, int, int, float], alpha: float) -> str:
    vocab, length, seed, scale = model
    return (
        f"vocab={vocab}, length={length} ({vocab**length} sequences, exact), seed={seed}, "
        f"scale={scale}, α={alpha}"
    )


@settings(max_examples=40)
@given(models, alphas)
def test_t1_tgo_loss_is_the_exact_gradient_of_sequence_skl(
    model: tuple[int, int, int, float], alpha: float
) -> None:
    e = t1_errors(instance(*model), alpha)
    assert e["tgo_error"] <= EXACT_ATOL, (
        f"E_p[∇ tgo_loss] − ∇SKL_α,seq = {e['tgo_error']:.3g} > {EXACT_ATOL} ({_describe(model, alpha)})"
    )


@settings(max_examples=40)
@given(models, alphas)
def test_t1_sgo_loss_is_the_exact_gradient_of_sequence_srkl(
    model: tuple[int, int, int, float], alpha: float
) -> None:
    e = t1_errors(instance(*model), alpha)
    assert e["sgo_error"] <= EXACT_ATOL, (
        f"E_q[∇ sgo_loss] − ∇SRKL_α,seq = {e['sgo_error']:.3g} > {EXACT_ATOL} ({_describe(model, alpha)})"
    )


def test_t1_stop_mode_is_only_a_semi_gradient() -> None:
    """Negative check: E7 (mixture_grad="stop") is not the gradient of SRKL_α,seq."""
    for model in NEGATIVE_INSTANCES:
        for alpha in (0.1, 0.5):
            e = t1_errors(instance(*model), alpha)
            assert e["stop_distance"] >= BIAS_MARGIN, (
                f"stop mode unexpectedly matches ∇SRKL (distance {e['stop_distance']:.3g} < {BIAS_MARGIN}; "
                f"{_describe(model, alpha)})"
            )
