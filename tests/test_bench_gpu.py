"""The device checks of ``scripts/gpu-check.sh``: chunked loss in bf16 against float64, trainer steps
under bf16 autocast, and bit-identical repeats under deterministic algorithms.

They run on ``$ASKD_DEVICE`` (default: ``cuda`` when available, else ``cpu``); ``make test`` runs
them on the CPU at the same sizes, the GPU script with ``ASKD_DEVICE=cuda``.
"""

import copy
import os
from pathlib import Path

import pytest
import torch

import askd_ref
from askd_ref.bench import step as bench_step
from askd_ref.chunked import chunked_loss
from askd_ref.porting.tolerances import assert_close, tolerance

DEVICE = os.environ.get("ASKD_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
if DEVICE.startswith("cuda") and not torch.cuda.is_available():
    pytest.skip(f"ASKD_DEVICE={DEVICE} but torch.cuda.is_available() is False", allow_module_level=True)


def _inputs(rows: int, seq: int, hidden: int, vocab: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def bf16(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (scale * torch.randn(*shape, generator=g)).to(DEVICE, torch.bfloat16)

    return {
        "hs": bf16(rows, seq, hidden).requires_grad_(),
        "ws": bf16(vocab, hidden, scale=hidden**-0.5).requires_grad_(),
        "ht": bf16(rows, seq, hidden),
        "wt": bf16(vocab, hidden, scale=2 * hidden**-0.5),
        "ids": torch.randint(0, vocab, (rows, seq), generator=g).to(DEVICE),
    }


#: Qwen2's vocabulary on the GPU; on the CPU (``make test``) a small prime keeps it to seconds.
VOCABS = (97, 151936) if DEVICE.startswith("cuda") else (97, 1031)


@pytest.mark.parametrize("method", ["askd-dense", "gkd", "distillm2"])
@pytest.mark.parametrize("vocab", VOCABS)
def test_chunked_bf16_equals_the_float64_full_logit_loss(method: str, vocab: int) -> None:
    """bf16 hidden states and weights → chunked loss (fp32 inside) = float64 full logits of them."""
    rows, seq, hidden = 4, 5, 16
    x = _inputs(rows, seq, hidden, vocab)
    mask = torch.ones(rows, seq, dtype=torch.bool, device=DEVICE)
    mask[1, 3:] = False
    is_tgo = torch.tensor([True, False, True, False], device=DEVICE)
    quality = torch.tensor([0.9, 0.2, 0.5, 0.7], device=DEVICE)
    out = chunked_loss(
        method,
        student_hidden=x["hs"],
        student_weight=x["ws"],
        teacher_hidden=x["ht"],
        teacher_weight=x["wt"],
        target_ids=x["ids"],
        mask=mask,
        is_tgo=is_tgo,
        quality=quality,
        chunk_size=7,
    )
    hs64 = x["hs"].detach().double().requires_grad_()
    zs = hs64 @ x["ws"].detach().double().T
    zt = x["ht"].double() @ x["wt"].double().T
    batch = askd_ref.DistillBatch(
        mask=mask,
        is_tgo=is_tgo,
        quality=quality.double(),
        student_logp=torch.log_softmax(zs, -1),
        teacher_logp=torch.log_softmax(zt, -1),
    )
    ref = askd_ref.compute_loss(method, batch).loss
    assert_close(out.loss, ref, tolerance(torch.bfloat16), what=f"{method} loss on {DEVICE}")
    (g,) = torch.autograd.grad(out.loss, x["hs"])
    (g_ref,) = torch.autograd.grad(ref, hs64)
    scale = float(g_ref.abs().max())
    assert_close(
        g / scale, g_ref / scale, tolerance(torch.bfloat16, "grad"), what=f"{method} ∂L/∂h on {DEVICE}"
    )


def _steps(tmp_path: Path, *, bf16: bool, seed: int = 0) -> torch.nn.Module:
    tok, teacher, student = bench_step.build_models("toy", layers=1)
    student = copy.deepcopy(student)
    s = bench_step.StepSettings(prompts=2, sgo_per_prompt=2, max_new_tokens=6, bf16=bf16, seed=seed)
    trainer = bench_step.make_trainer(
        tok, teacher.to(DEVICE), student.to(DEVICE), s, tmp_path, DEVICE, steps=2
    )
    trainer.train()
    return student


def test_trainer_steps_under_bf16_autocast(tmp_path: Path) -> None:
    _, _, initial = bench_step.build_models("toy", layers=1)
    trained = _steps(tmp_path / "a", bf16=True)
    for name, p in trained.named_parameters():
        assert p.device.type == torch.device(DEVICE).type
        assert bool(torch.isfinite(p).all()), name
    assert any(
        not torch.equal(p.cpu(), p0) for p, p0 in zip(trained.parameters(), initial.parameters(), strict=True)
    )


def test_deterministic_algorithms_give_bit_identical_steps(tmp_path: Path) -> None:
    """Under ``torch.use_deterministic_algorithms(True)`` two runs train to identical parameters."""
    if DEVICE.startswith("cuda") and not os.environ.get("CUBLAS_WORKSPACE_CONFIG"):
        pytest.skip("CUBLAS_WORKSPACE_CONFIG must be set before CUDA starts (the GPU script sets :4096:8)")
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        a = _steps(tmp_path / "a", bf16=False)
        b = _steps(tmp_path / "b", bf16=False)
    finally:
        torch.use_deterministic_algorithms(previous)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb), f"{name} differs between two deterministic runs"
