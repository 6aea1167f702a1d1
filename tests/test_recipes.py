"""The GPU recipes (``configs/recipes/*.yaml``) parse and run end to end on tiny local models.

Each recipe is loaded as written, then only what needs a GPU or a download is substituted:
model paths (tiny Llamas saved next to the test), data files (a few generated samples), device
and dtype (CPU, fp32), and the step/length budget. Method, options, quality signal, SGO regime
and loss path stay as the recipe sets them.
"""

import json
import os
import string
from pathlib import Path

import pytest
import yaml

from askd_ref.engine.data import Prompt, Sample, write_samples
from askd_ref.engine.run import load_run_config, run_distill
from askd_ref.toy import build_tokenizer, tiny_llama

RECIPES = sorted((Path(__file__).resolve().parent.parent / "configs" / "recipes").glob("*.yaml"))
ALPHABET = "".join(ch for ch in string.printable if ch not in "\r\x0b\x0c")


def test_there_are_math_and_code_recipes():
    names = [p.name for p in RECIPES]
    assert any("gsm8k" in n for n in names)
    assert any("mbpp" in n for n in names)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_parses(recipe):
    cfg = load_run_config(recipe)
    assert cfg.device == "cuda"
    assert cfg.dtype == "bf16"
    assert cfg.askd.loss_path == "chunked"
    assert cfg.teacher.startswith("Qwen/")
    assert cfg.student.startswith("Qwen/")
    assert cfg.askd.quality in ("exact_match", "unit_tests")
    assert all(os.path.isabs(p) for p in cfg.train_files)


def _tiny_models(tmp_path):
    tok = build_tokenizer(ALPHABET)
    dirs = {}
    for name, (d, seed) in {"teacher": (16, 1), "student": (16, 2)}.items():
        model = tiny_llama(tok, hidden_size=d, num_layers=1, num_heads=2, seed=seed, max_positions=512)
        path = tmp_path / name
        model.save_pretrained(path)
        tok.save_pretrained(path)
        dirs[name] = str(path)
    return dirs


def _data(tmp_path, code: bool):
    if code:
        tests = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n"
        prompts = [Prompt(f"Write add(a, b). Case {i}.\n", tests=tests) for i in range(4)]
        responses = ["```python\ndef add(a, b):\n    return a + b\n```", "def add(a, b):\n    return a - b\n"]
    else:
        prompts = [Prompt(f"Q: {a}+{a}=? Answer with #### n.\n", reference=str(2 * a)) for a in range(4)]
        responses = [f"#### {2 * a}" if a % 2 else "#### 7" for a in range(4)]
    samples = [
        Sample(
            prompt=p.prompt,
            response=responses[i % len(responses)],
            source="teacher",
            reference=p.reference,
            tests=p.tests,
        )
        for i, p in enumerate(prompts)
    ]
    write_samples(tmp_path / "train.jsonl", samples)
    with open(tmp_path / "eval.jsonl", "w", encoding="utf-8") as f:
        for p in prompts[:2]:
            f.write(json.dumps({"prompt": p.prompt, "reference": p.reference, "tests": p.tests}) + "\n")


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_runs_end_to_end_on_tiny_models(recipe, tmp_path):
    raw = yaml.safe_load(recipe.read_text())
    code = raw["quality"] == "unit_tests"
    dirs = _tiny_models(tmp_path)
    _data(tmp_path, code)
    raw["teacher"], raw["student"] = dirs["teacher"], dirs["student"]
    raw["data"]["train"] = [str(tmp_path / "train.jsonl")]
    raw["data"]["eval"] = str(tmp_path / "eval.jsonl")
    raw["device"], raw["dtype"] = "cpu", "fp32"
    if "teacher_dtype" in raw:
        raw["teacher_dtype"] = "fp32"
    raw["sgo"]["max_new_tokens"] = 8
    raw["sgo"]["batch_size"] = 4
    raw["eval"]["max_new_tokens"] = 8
    if "quality_kwargs" in raw:
        raw["quality_kwargs"]["max_workers"] = 1
    training = raw["training"]
    training.update(
        output_dir=str(tmp_path / "run"),
        per_device_train_batch_size=2,
        gradient_accumulation_steps=2,
        max_steps=2,
        logging_steps=1,
        save_strategy="no",
    )
    training.pop("save_steps", None)
    training.pop("num_train_epochs", None)
    cfg_path = tmp_path / "recipe.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    original = load_run_config(recipe)
    cfg = load_run_config(cfg_path)
    assert (cfg.askd.method, cfg.askd.options, cfg.askd.sgo_regime, cfg.askd.quality, cfg.askd.loss_path) == (
        original.askd.method,
        original.askd.options,
        original.askd.sgo_regime,
        original.askd.quality,
        original.askd.loss_path,
    )
    metrics = run_distill(cfg, progress=False)
    assert metrics["global_step"] == 2
    assert metrics["eval"]["n"] == 2
    assert 0.0 <= metrics["eval"]["accuracy"] <= 1.0
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["method"] == original.askd.method
    assert (tmp_path / "run" / "final" / "config.json").exists()
    logs = [h for h in metrics["log_history"] if "loss" in h]
    assert logs
    assert "quality/tgo_mean" in logs[0]


def test_distill_cli_and_config_errors(tmp_path, capsys):
    from askd_ref.cli import main

    dirs = _tiny_models(tmp_path)
    _data(tmp_path, code=False)
    cfg = {
        "teacher": dirs["teacher"],
        "student": dirs["student"],
        "data": {"train": "train.jsonl", "eval": "eval.jsonl"},  # relative to the config file
        "method": "distillm2",
        "sgo": {"regime": "on_policy", "max_new_tokens": 6},
        "training": {"output_dir": "out", "max_steps": 1, "per_device_train_batch_size": 2, "report_to": []},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["distill", "--config", str(path), "--no-progress"]) == 0
    assert "distillm2: 1 steps" in capsys.readouterr().out
    assert (tmp_path / "out" / "metrics.json").exists()
    # a wrong run file is a usage error: exit code 2, one line naming the file, the key and the fix
    for bad, expected in (
        (dict(cfg, learning_rate=1e-3), "unknown key 'learning_rate' at the top level"),
        (dict(cfg, sgoo={"regime": "on_policy"}), "unknown key 'sgoo' at the top level; did you mean 'sgo'?"),
        (
            dict(cfg, options={"alpha_low": 0.1}),
            "unknown key 'alpha_low' in 'options'; did you mean 'alpha_lo'",
        ),
        (dict(cfg, method="ppo"), "method must be one of"),
    ):
        path.write_text(yaml.safe_dump(bad))
        assert main(["distill", "--config", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"askd distill: error: {path}"), err
        assert expected in err, err
        assert len(err.strip().splitlines()) == 1, err


def test_eval_cli(tmp_path, capsys):
    from askd_ref.cli import main

    dirs = _tiny_models(tmp_path)
    _data(tmp_path, code=False)
    out = tmp_path / "eval.json"
    assert (
        main(
            [
                "eval",
                "--model",
                dirs["student"],
                "--prompts",
                str(tmp_path / "eval.jsonl"),
                "--max-new-tokens",
                "6",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    data = json.loads(out.read_text())
    assert data["n"] == 2
    assert len(data["scores"]) == 2
    assert "exact_match" in capsys.readouterr().out
