"""Logging: ``report_to=["tensorboard"]`` gets the loss and its diagnostics, and every N steps a few
TGOs/SGOs with quality, Δ, α and coefficient go to ``samples.jsonl`` and TensorBoard text."""

import json
import math

import pytest
import torch
from transformers import TrainingArguments

from askd_ref.engine.config import ASKDConfig
from askd_ref.engine.forward import sequence_logprobs
from askd_ref.engine.trainer import ASKDTrainer
from askd_ref.toy import build_tokenizer, tiny_llama
from tests.test_trainer import make_items

pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install tensorboard)")


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def _events(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    return acc


def test_tensorboard_gets_scalars_and_sample_text_and_samples_jsonl_is_right(tok, tmp_path, monkeypatch):
    teacher = tiny_llama(tok, hidden_size=16, num_layers=1, num_heads=2, seed=1)
    student = tiny_llama(tok, hidden_size=16, num_layers=1, num_heads=2, seed=2)
    logdir = tmp_path / "tb"
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(logdir))  # transformers 5; else output_dir/runs
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        report_to=["tensorboard"],
        per_device_train_batch_size=2,
        max_steps=4,
        learning_rate=0.0,  # the model stays fixed: the logged Δ can be recomputed afterwards
        logging_steps=1,
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    cfg = ASKDConfig(method="askd", max_new_tokens=5, chunk_size=8, log_samples_every=2, log_samples_count=1)
    trainer = ASKDTrainer(
        model=student,
        teacher=teacher,
        args=args,
        config=cfg,
        train_dataset=make_items(tok, n=8),
        processing_class=tok,
    )
    trainer.train()
    trainer.callback_handler.callbacks[-1].on_train_end(args, trainer.state, trainer.control)  # flush

    acc = _events(logdir)
    tags = acc.Tags()
    assert "train/loss" in tags["scalars"]
    assert "train/tgo/w" in tags["scalars"]  # the loss diagnostics reach TensorBoard
    assert len(acc.Scalars("train/loss")) == 4
    text_tags = [t for t in tags["tensors"] if t.startswith("samples")]
    assert text_tags, tags
    steps = sorted({e.step for t in text_tags for e in acc.Tensors(t)})
    assert steps == [0, 2]

    lines = [json.loads(x) for x in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert [(e["step"], e["kind"]) for e in lines] == [(0, "tgo"), (0, "sgo"), (2, "tgo"), (2, "sgo")]
    from askd_ref.engine.tokens import encode_prompt, encode_response, pad_batch

    for e in lines:
        assert e["quality"] is not None
        assert 0.0 < e["alpha"] < 1.0
        # Δ: mean over response tokens of log q − log p, recomputed with full forwards
        prompt = encode_prompt(tok, e["prompt"])
        response = e["response_ids"]
        if e["kind"] == "tgo":
            assert response == encode_response(tok, e["response"])
        batch = pad_batch([prompt], [response], pad_id=tok.pad_token_id)
        with torch.no_grad():
            s, _ = sequence_logprobs(trainer.model, batch, len(tok))
            t, _ = sequence_logprobs(teacher, batch, len(tok))
        m = batch.shifted_mask
        delta = float(((s - t)[m]).double().mean())
        assert math.isclose(e["delta"], delta, rel_tol=1e-4, abs_tol=1e-5), e
        if e["kind"] == "tgo":  # w = σ(Δ − logit α), written out
            a = e["alpha"]
            w = 1.0 / (1.0 + math.exp(-(e["delta"] - math.log(a / (1 - a)))))
            assert math.isclose(e["coefficient"], w, rel_tol=1e-9)
        else:
            assert math.isfinite(e["coefficient"])


def test_sample_logging_is_off_by_default_and_validated(tmp_path):
    assert ASKDConfig().log_samples_every == 0
    with pytest.raises(ValueError, match="log_samples_every must be a non-negative int"):
        ASKDConfig(log_samples_every=-1)
    with pytest.raises(ValueError, match="log_samples_count must be a positive int"):
        ASKDConfig(log_samples_count=0)
