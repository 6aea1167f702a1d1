"""Mutation check: each plausible wrong implementation must make at least one check fail.

``python -m checks.mutants`` runs, for every mutant, ``pytest`` on the checks listed for it in a
subprocess with ``ASKD_MUTANT=<name>``; ``checks/conftest.py`` then patches the wrong
implementation into ``askd_ref`` before the checks are imported. A mutant is *caught* when
pytest exits with status 1 (tests ran and at least one failed); any other status (0: all
passed, ≥ 2: collection or usage error) means it survived or the run was invalid. A control run
without a mutant must pass. Exit status 1 when a mutant survives or the control fails.

Patching: ``askd_ref`` exports lazily and its modules import each other's functions by name
(``askd_ref.losses`` does ``from askd_ref.coefficients import tgo_coefficient``), so a patch
replaces the attribute in the defining module *and* in every loaded ``askd_ref`` module that
holds the original object (including the package namespace once a name has been resolved).
"""

import argparse
import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["MUTANTS", "Mutant", "MutantRun", "apply_mutant", "run_all", "run_mutant"]

ROOT = Path(__file__).resolve().parent.parent


def _replace_everywhere(module_name: str, replacements: dict[str, Any]) -> None:
    """Set ``replacements`` on ``module_name`` and wherever the original objects were imported."""
    import importlib

    module = importlib.import_module(module_name)
    originals = {name: getattr(module, name) for name in replacements}
    for mod_name, mod in list(sys.modules.items()):
        if mod is None or not (mod_name == "askd_ref" or mod_name.startswith("askd_ref.")):
            continue
        for name, original in originals.items():
            if mod.__dict__.get(name) is original:
                setattr(mod, name, replacements[name])
    for name, value in replacements.items():
        setattr(module, name, value)


def _w_logit_one_minus_alpha() -> None:
    from askd_ref._params import Param, as_tensors

    def tgo_coefficient(delta: Any, alpha: Any) -> Tensor:
        d, a = as_tensors(Param("delta", delta), Param("alpha", alpha, 0.0, 1.0))
        return torch.sigmoid(d - (torch.log1p(-a) - torch.log(a)))  # logit(1 − α) instead of logit α

    _replace_everywhere("askd_ref.coefficients", {"tgo_coefficient": tgo_coefficient})


def _c_tilde_without_alpha_term() -> None:
    from askd_ref.coefficients import log_u

    def sgo_coefficient_kernel(d: Tensor, a: Tensor, mixture_grad: str) -> Tensor:
        return log_u(d, a)  # c̃ = log u, the −α(u − 1) term lost

    _replace_everywhere("askd_ref.coefficients", {"sgo_coefficient_kernel": sgo_coefficient_kernel})


def _gate_ignored() -> None:
    from askd_ref._params import Param, as_tensors

    def quality_gate(quality: Any, *, options: Any = None) -> Tensor:
        (r,) = as_tensors(Param("quality", quality, 0.0, 1.0))
        return torch.zeros_like(r)  # the gate h(r) is ignored

    _replace_everywhere("askd_ref.schedules", {"quality_gate": quality_gate})


def _alphas_swapped() -> None:
    from askd_ref import schedules

    tgo, sgo = schedules.tgo_alpha, schedules.sgo_alpha
    _replace_everywhere("askd_ref.schedules", {"tgo_alpha": sgo, "sgo_alpha": tgo})


def _sgo_token_level_rkl() -> None:
    from askd_ref.losses import LossOutput, check_count
    from askd_ref.options import resolve_options
    from askd_ref.sequence import check_token_batch, pool

    def sgo_loss(
        *,
        student_token_logp: Tensor,
        teacher_token_logp: Tensor,
        mask: Tensor,
        quality: Any,
        behaviour_logp: Tensor | None = None,
        options: Any = None,
        num_samples: int | None = None,
    ) -> LossOutput:
        # Token-level reverse KL on the sampled prefixes: per-token coefficient sg(δ_t) instead of
        # the sequence-level ĉ(Δ(y), r); its expectation is G_single, not the sequence gradient.
        opts = resolve_options(options)
        s, t, m = check_token_batch(student_token_logp, teacher_token_logp, mask)
        assert t is not None
        n = check_count("num_samples", num_samples, s.shape[0])
        per_sample = pool((s - t).detach() * s, m, opts.normalize)
        return LossOutput(loss=per_sample.sum() / n, sample_count=int(s.shape[0]), diagnostics={})

    _replace_everywhere("askd_ref.losses", {"sgo_loss": sgo_loss})


def _offpolicy_ratio_dropped() -> None:
    from askd_ref import losses

    original = losses.sgo_loss

    def sgo_loss(**kwargs: Any) -> Any:
        kwargs["behaviour_logp"] = None  # off-policy samples treated as on-policy: ratio dropped
        return original(**kwargs)

    _replace_everywhere("askd_ref.losses", {"sgo_loss": sgo_loss})


def _source_mutant(module_name: str, function: str, old: str, new: str) -> Callable[[], None]:
    """A one-line convention mistake: ``function``'s source with ``old`` replaced by ``new``.

    ``old`` must occur exactly once in the current source (so a mutant whose line has changed
    fails loudly instead of silently patching nothing); the edited function is compiled in a
    copy of the module's namespace and replaces the original everywhere.
    """

    def apply() -> None:
        import importlib
        import inspect
        import textwrap

        module = importlib.import_module(module_name)
        source = textwrap.dedent(inspect.getsource(getattr(module, function)))
        if source.count(old) != 1:
            count = source.count(old)
            raise RuntimeError(f"mutant text {old!r} occurs {count} times in {module_name}.{function}")
        namespace = dict(module.__dict__)
        exec(compile(source.replace(old, new), f"<mutant of {module_name}.{function}>", "exec"), namespace)
        _replace_everywhere(module_name, {function: namespace[function]})

    return apply


def _srkl_gradient_scaled() -> None:
    from askd_ref import divergences

    original = divergences.skew_reverse_kl

    def skew_reverse_kl(**kwargs: Any) -> Tensor:
        value = original(**kwargs)
        return value + 0.5 * (value - value.detach())  # same value, gradient × 1.5

    _replace_everywhere("askd_ref.divergences", {"skew_reverse_kl": skew_reverse_kl})


@dataclasses.dataclass(frozen=True)
class Mutant:
    """A wrong implementation and the checks expected to catch it (pytest node ids)."""

    name: str
    description: str
    apply: Callable[[], None]
    checks: tuple[str, ...]


_T1 = "checks/test_t1_exactness.py"
_T1M = "checks/test_t1m_mean_mode.py"
_T9D = "checks/test_t9d_dense.py"
_T10 = (
    "checks/test_t10_uniform_convergence.py::test_t10_askd_estimators_stay_under_a_tight_bernstein_envelope"
)
_L = "askd_ref.losses"
MUTANTS: dict[str, Mutant] = {
    m.name: m
    for m in (
        Mutant(
            "w_logit_one_minus_alpha",
            "E5 uses logit(1 − α): w = σ(Δ − logit(1 − α))",
            _w_logit_one_minus_alpha,
            ("checks/test_t3_ranges.py::test_t3_w_in_unit_interval_and_one_minus_alpha_at_zero",),
        ),
        Mutant(
            "c_tilde_without_alpha_term",
            "E6 loses its −α(u − 1) term: c̃ = log u",
            _c_tilde_without_alpha_term,
            (f"{_T1}::test_t1_sgo_loss_is_the_exact_gradient_of_sequence_srkl",),
        ),
        Mutant(
            "gate_ignored",
            "E9 ignores the quality gate (h ≡ 0)",
            _gate_ignored,
            ("checks/test_t3_ranges.py::test_t3_c_hat_nonpositive_where_gate_is_closed",),
        ),
        Mutant(
            "alphas_swapped",
            "E10 α_T and α_S swapped",
            _alphas_swapped,
            ("checks/test_t5_monotone.py::test_t5_w_non_decreasing_in_quality",),
        ),
        Mutant(
            "sgo_token_level_rkl",
            "E12 replaced by token-level reverse KL on sampled prefixes (coefficient sg(δ_t) per token)",
            _sgo_token_level_rkl,
            (f"{_T1}::test_t1_sgo_loss_is_the_exact_gradient_of_sequence_srkl",),
        ),
        Mutant(
            "offpolicy_ratio_dropped",
            "E13 drops the importance ratio (off-policy SGOs treated as on-policy)",
            _offpolicy_ratio_dropped,
            ("checks/test_t9_estimator_bias.py::test_t9_offpolicy_sgo_loss_with_sequence_ratio_is_unbiased",),
        ),
        Mutant(
            "srkl_gradient_scaled",
            "E3's gradient 1.5× too large (values unchanged): passes the old T8 bound, not the sharp one",
            _srkl_gradient_scaled,
            ("checks/test_t8_logit_gradients.py::test_t8_sharp_constants_bound_askd_ref_gradients",),
        ),
        # One-line convention mistakes in mean mode, off-policy and E15 (source edits).
        Mutant(
            "offpolicy_ratio_from_mean_score",
            "E13's ratio built from the length-normalised score: ρ = exp(S̄ − log μ)",
            _source_mutant(
                _L,
                "sgo_loss",
                "log_rho = s.sum(-1) - mu",
                "log_rho = pool(s, m, opts.normalize) - mu",
            ),
            (_T1M,),
        ),
        Mutant(
            "offpolicy_length_dropped",
            "E13 in mean mode without its 1/|y|",
            _source_mutant(
                _L, "sgo_loss", "per_sample = per_sample / m.sum(-1).to(s.dtype)", "per_sample = per_sample"
            ),
            (_T1M,),
        ),
        Mutant(
            "offpolicy_ppo_min",
            "E13's PPO max of losses replaced by the min",
            _source_mutant(
                _L,
                "clipped_ratio_surrogate",
                "torch.maximum(unclipped, clipped)",
                "torch.minimum(unclipped, clipped)",
            ),
            (_T1M,),
        ),
        Mutant(
            "sgo_delta_sum_score_mean",
            "E12: Δ pooled by sum while the score is pooled by mean",
            _source_mutant(
                _L,
                "sgo_loss",
                "delta = pool(s - t, m, opts.normalize)",
                'delta = pool(s - t, m, "sum")',
            ),
            (_T1M,),
        ),
        Mutant(
            "sgo_score_sum_delta_mean",
            "E12: the score pooled by sum while Δ is pooled by mean",
            _source_mutant(_L, "sgo_loss", "c_hat * pool(s, m, opts.normalize)", 'c_hat * pool(s, m, "sum")'),
            (_T1M,),
        ),
        Mutant(
            "tgo_delta_sum_score_mean",
            "E11: Δ pooled by sum while the score is pooled by mean",
            _source_mutant(
                _L,
                "tgo_loss",
                "delta = pool(s - t, m, opts.normalize)",
                'delta = pool(s - t, m, "sum")',
            ),
            (_T1M,),
        ),
        Mutant(
            "uj_correction_length_not_minus_one",
            "the uj length correction uses |y|·φ instead of (|y| − 1)·φ",
            _source_mutant(
                "askd_ref.sequence",
                "length_corrected_sgo_coefficient",
                "(lengths.to(c_hat.dtype) - 1) * phi",
                "lengths.to(c_hat.dtype) * phi",
            ),
            (f"{_T1M}::test_t1m_uj_option_is_the_exact_gradient_of_uj_mean",),
        ),
        Mutant(
            "dense_sgo_gate_dropped",
            "E15's SGO term without its (1 − h(r)) weight",
            _source_mutant(
                _L,
                "dense_askd_loss",
                "per_sample = (1 - h) * pool_sums",
                "per_sample = pool_sums",
            ),
            (_T9D,),
        ),
        Mutant(
            "tgo_divided_by_token_count",
            "tgo_loss divided by the batch's token count instead of its sample count",
            _source_mutant(
                _L, "tgo_loss", "loss = -(w * score).sum() / n", "loss = -(w * score).sum() / m.sum()"
            ),
            (_T10,),
        ),
        Mutant(
            "dense_srkl_ignores_mixture_grad",
            "E15's SRKL term ignores mixture_grad (always the full gradient)",
            _source_mutant(
                _L,
                "dense_askd_loss",
                "Divergence.srkl(opts.mixture_grad), alpha",
                "Divergence.SRKL_FULL, alpha",
            ),
            (_T9D,),
        ),
        Mutant(
            "dense_tgo_constant_alpha",
            "E15's SKL term at constant α_lo instead of α_T(r)",
            _source_mutant(
                _L, "dense_askd_loss", "SKL, alpha)", "SKL, torch.full_like(alpha, opts.alpha_lo))"
            ),
            (_T9D,),
        ),
        Mutant(
            "dense_tgo_pooled_by_sum",
            "E15's SKL term summed over tokens under normalize='mean'",
            _source_mutant(
                _L,
                "dense_askd_loss",
                "per_sample = pool_sums(sums, lengths, opts.normalize)\n"
                "            terms.append(opts.lambda_tgo",
                'per_sample = pool_sums(sums, lengths, "sum")\n            terms.append(opts.lambda_tgo',
            ),
            (_T9D,),
        ),
    )
}


def apply_mutant(name: str) -> None:
    """Patch mutant ``name`` into askd_ref (called by ``checks/conftest.py``)."""
    if name not in MUTANTS:
        raise ValueError(f"ASKD_MUTANT must be one of {sorted(MUTANTS)}, got {name!r}")
    MUTANTS[name].apply()


@dataclasses.dataclass(frozen=True)
class MutantRun:
    """The outcome of running a mutant's checks."""

    mutant: str
    returncode: int
    failed: tuple[str, ...]
    seconds: float

    @property
    def caught(self) -> bool:
        return self.returncode == 1 and bool(self.failed)


def _pytest(node_ids: Sequence[str], mutant: str | None, timeout: float) -> tuple[int, list[str], float]:
    env = dict(os.environ)
    env.pop("ASKD_MUTANT", None)
    if mutant:
        env["ASKD_MUTANT"] = mutant
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-x",
        "-rf",
        "-p",
        "no:cacheprovider",
        "--no-header",
        *node_ids,
    ]
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    seconds = time.perf_counter() - start
    failed = [line.split(" ", 2)[1] for line in proc.stdout.splitlines() if line.startswith("FAILED ")]
    if proc.returncode not in (0, 1):
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
    return proc.returncode, failed, seconds


def run_mutant(name: str, timeout: float = 300.0) -> MutantRun:
    """Run mutant ``name``'s checks in a subprocess with the mutant applied."""
    mutant = MUTANTS[name]
    code, failed, seconds = _pytest(mutant.checks, name, timeout)
    return MutantRun(name, code, tuple(failed), seconds)


def run_all(
    control: bool = True,
    timeout: float = 300.0,
    workers: int = 2,
    progress: Callable[[MutantRun], None] | None = None,
) -> tuple[list[MutantRun], MutantRun | None]:
    """Every mutant (``workers`` subprocesses at a time); optionally a control run without one.

    ``progress`` is called with each run as it finishes; results come back in MUTANTS order.
    """
    from concurrent.futures import ThreadPoolExecutor, as_completed

    done: dict[str, MutantRun] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run_mutant, name, timeout) for name in MUTANTS]
        for future in as_completed(futures):
            run = future.result()
            done[run.mutant] = run
            if progress is not None:
                progress(run)
    runs = [done[name] for name in MUTANTS]
    control_run = None
    if control:
        nodes = sorted({node for m in MUTANTS.values() for node in m.checks})
        code, failed, seconds = _pytest(nodes, None, timeout)
        control_run = MutantRun("(control: no mutant)", code, tuple(failed), seconds)
        if progress is not None:
            progress(control_run)
    return runs, control_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m checks.mutants", description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-control", action="store_true", help="skip the run without a mutant")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    args = parser.parse_args(argv)

    def report(run: MutantRun) -> None:
        state = (
            ("passed" if run.returncode == 0 else "FAILED")
            if run.mutant not in MUTANTS
            else ("caught" if run.caught else "SURVIVED")
        )
        print(f"[{run.seconds:5.1f}s] {run.mutant}: {state}", file=sys.stderr, flush=True)

    print(f"running {len(MUTANTS)} mutants (+ control) in subprocesses ...", file=sys.stderr, flush=True)
    runs, control = run_all(control=not args.no_control, progress=report)
    ok = True
    print(f"{'mutant':30s} {'status':9s} {'time':>6s}  caught by")
    for run in runs:
        status = "caught" if run.caught else "SURVIVED"
        ok &= run.caught
        print(f"{run.mutant:30s} {status:9s} {run.seconds:5.1f}s  {', '.join(run.failed) or '-'}")
        print(f"{'':30s} ({MUTANTS[run.mutant].description})")
    if control is not None:
        passed = control.returncode == 0
        ok &= passed
        print(f"{control.mutant:30s} {'passed' if passed else 'FAILED':9s} {control.seconds:5.1f}s")
    if args.json:
        from askd_ref.io import atomic_write_json

        atomic_write_json(
            args.json,
            {
                "runs": [dataclasses.asdict(r) | {"caught": r.caught} for r in runs],
                "control": None if control is None else dataclasses.asdict(control),
            },
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
