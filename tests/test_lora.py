"""LoRA students: only adapter weights train, the teacher is untouched, checkpoints hold the
adapter and resume exactly, a merged model can be written. Tiny models on CPU."""

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM, TrainingArguments

from askd_ref.engine.config import ASKDConfig
from askd_ref.engine.trainer import ASKDTrainer
from askd_ref.toy import build_tokenizer, tiny_llama
from tests.test_trainer import make_items

peft = pytest.importorskip("peft", reason="peft is not installed (pip install -e '.[peft]')")

TARGETS = ["q_proj", "v_proj", "up_proj"]


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def _lora(**kw):
    return peft.LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.0, target_modules=TARGETS, task_type="CAUSAL_LM", **kw
    )


def _trainer(tok, tmp_path, student, teacher, *, steps=2, save_steps=None, loss_path="chunked", name="run"):
    args = TrainingArguments(
        output_dir=str(tmp_path / name),
        per_device_train_batch_size=2,
        max_steps=steps,
        learning_rate=0.05,
        lr_scheduler_type="constant",
        optim="sgd",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        logging_steps=1,
        save_strategy="steps" if save_steps else "no",
        save_steps=save_steps or 500,
        seed=3,
    )
    cfg = ASKDConfig(method="distillm2", max_new_tokens=5, chunk_size=8, loss_path=loss_path)
    return ASKDTrainer(
        model=student,
        teacher=teacher,
        args=args,
        config=cfg,
        train_dataset=make_items(tok, n=4),
        processing_class=tok,
        peft_config=_lora(),
    )


@pytest.mark.parametrize("loss_path", ["chunked", "full"])
def test_only_adapter_weights_train_and_the_teacher_is_untouched(tok, tmp_path, loss_path):
    student = tiny_llama(tok, hidden_size=16, num_layers=1, num_heads=2, seed=2)
    teacher = tiny_llama(tok, hidden_size=16, num_layers=1, num_heads=2, seed=1)
    base_before = {k: v.clone() for k, v in student.state_dict().items()}
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    trainer = _trainer(tok, tmp_path, student, teacher, loss_path=loss_path)
    model = trainer.model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable
    assert all("lora_" in n for n in trainable)
    lora_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}
    trainer.train()
    for n, p in model.named_parameters():
        if "lora_B" in n:
            assert not torch.equal(p, lora_before[n]), f"{n} did not train"
    base = model.get_base_model()
    for k, v in base.state_dict().items():
        if "lora_" in k:
            continue
        key = k.replace(".base_layer", "")
        assert torch.equal(v, base_before[key]), f"base weight {k} changed"
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, teacher_before[k]), f"teacher weight {k} changed"


def test_checkpoints_hold_the_adapter_resume_exactly_and_merge(tok, tmp_path):
    make = lambda seed: tiny_llama(tok, hidden_size=16, num_layers=1, num_heads=2, seed=seed)  # noqa: E731
    teacher = make(1)
    full = _trainer(tok, tmp_path, make(2), teacher, steps=2, name="full")
    full.train()
    part = _trainer(tok, tmp_path, make(2), teacher, steps=2, save_steps=1, name="part")
    part.train()
    ckpt = tmp_path / "part" / "checkpoint-1"
    names = {p.name for p in ckpt.iterdir()}
    assert "adapter_model.safetensors" in names
    assert "model.safetensors" not in names  # the adapter only
    resumed = _trainer(tok, tmp_path, make(2), teacher, steps=2, name="part")
    resumed.train(resume_from_checkpoint=str(ckpt))
    ref = {n: p for n, p in full.model.named_parameters() if "lora_" in n}
    got = {n: p for n, p in resumed.model.named_parameters() if "lora_" in n}
    assert ref.keys() == got.keys()
    for n in ref:
        torch.testing.assert_close(got[n], ref[n], rtol=1e-5, atol=1e-7, msg=f"{n} after resume")
    # the merged model is a plain causal LM with the adapted weights: same logits as the adapter model
    out = tmp_path / "merged"
    full.save_merged_model(str(out))
    merged = AutoModelForCausalLM.from_pretrained(out)
    ids = torch.tensor([tok("12+7=")["input_ids"]])
    with torch.no_grad():
        a = full.model(input_ids=ids).logits
        b = merged(input_ids=ids).logits
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    assert not any("lora" in k for k in merged.state_dict())
    assert any("lora_" in n for n, _ in full.model.named_parameters())  # the trainer keeps its adapter


def test_peft_errors_are_named(tok, tmp_path):
    student = tiny_llama(tok, hidden_size=16, num_layers=1, num_heads=2, seed=2)
    with pytest.raises(ValueError, match="same object"):
        _trainer(tok, tmp_path, student, student)
    head = peft.LoraConfig(r=2, target_modules=["lm_head"], task_type="CAUSAL_LM")
    trainer = _trainer(
        tok,
        tmp_path,
        copy.deepcopy(student),
        tiny_llama(tok, hidden_size=16, num_layers=1, num_heads=2, seed=1),
    )
    with pytest.raises(ValueError, match="already a PeftModel"):
        _trainer(tok, tmp_path, trainer.model, None)
    from askd_ref.engine.trainer import _apply_peft, _head

    wrapped = _apply_peft(copy.deepcopy(student), head, None)
    with pytest.raises(ValueError, match="output projection carries a PEFT adapter"):
        _head(wrapped, len(tok))


def test_a_lora_distill_run_from_a_run_file(tmp_path):
    """``askd distill`` with a ``peft:`` block: adapter in final/, merged model in final-merged/."""
    import yaml

    from askd_ref.engine.run import load_run_config, run_distill
    from tests.test_recipes import _data, _tiny_models

    dirs = _tiny_models(tmp_path)
    _data(tmp_path, code=False)
    raw = {
        "teacher": dirs["teacher"],
        "student": dirs["student"],
        "data": {"train": "train.jsonl"},
        "method": "gkd",
        "sgo": {"max_new_tokens": 4},
        "peft": {"r": 4, "lora_alpha": 8, "target_modules": TARGETS},
        "training": {"output_dir": "run", "max_steps": 2, "per_device_train_batch_size": 2},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    metrics = run_distill(load_run_config(path), progress=False)
    assert metrics["global_step"] == 2
    assert (tmp_path / "run" / "final" / "adapter_model.safetensors").exists()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "final-merged")
    assert not any("lora" in k for k in merged.state_dict())
    raw["peft"] = {"r": 4, "rank_typo": 3}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match=r"run\.yaml: peft: .*rank_typo"):
        load_run_config(path)
