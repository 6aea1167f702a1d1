"""ASKDTrainer with the peers' options: method parameters, loss temperature, token reduction with
global counts, DistiLLM-2's gradual β and GKD's on-policy fraction λ. Tiny models, CPU."""

import pytest
import torch

from askd_ref.baselines import distillm2_gradual_beta
from askd_ref.engine.config import ASKDConfig
from askd_ref.toy import build_tokenizer, tiny_llama
from tests.test_trainer import assert_grads_close, make_items, train


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


@pytest.fixture(scope="module")
def teacher(tok):
    return tiny_llama(tok, hidden_size=16, num_layers=1, num_heads=2, seed=11)


@pytest.fixture(scope="module")
def student(tok):
    return tiny_llama(tok, hidden_size=16, num_layers=1, num_heads=2, seed=12)


@pytest.mark.parametrize(
    ("method", "loss_path", "extra"),
    [
        ("gkd", "chunked", {"beta": 0.9, "loss_temperature": 2.0}),
        ("distillm2", "full", {"alpha": 0.2, "beta": 1.3, "loss_temperature": 0.8}),
        ("askd-dense", "chunked", {}),
        ("kd", "full", {}),
    ],
)
def test_token_reduction_with_accumulation_equals_one_large_batch(
    tok, teacher, student, tmp_path, method, loss_path, extra
):
    """reduction="token": 2 accumulated micro-batches == one batch (global token counts)."""
    items = make_items(tok, n=8, tgos_per_prompt=2)
    kw = dict(method=method, loss_path=loss_path, items=items, tmp_path=tmp_path, sgo_per_prompt=2)
    _, g1, _ = train(tok, teacher, student, batch=4, ga=1, reduction="token", **kw, **extra)
    _, g2, _ = train(tok, teacher, student, batch=2, ga=2, reduction="token", **kw, **extra)
    assert_grads_close(g2[0], g1[0], f"{method} token reduction GA=2 vs one batch")
    if method == "kd":
        return  # the toy TGOs all have one length: both reductions coincide
    # the reduction is not a no-op: per-sample means differ on the ragged SGOs
    _, g3, _ = train(tok, teacher, student, batch=4, ga=1, **kw, **extra)
    assert any(not torch.allclose(g1[0][n], g3[0][n], rtol=1e-4, atol=1e-7) for n in g1[0])


def test_chunked_and_full_paths_agree_with_parameters_and_temperature(tok, teacher, student, tmp_path):
    items = make_items(tok, n=4, tgos_per_prompt=2)
    cfg = dict(method="distillm2", loss_type="distillm_v1", beta=0.7, alpha=0.3, loss_temperature=1.7)
    kw = dict(items=items, tmp_path=tmp_path, reduction="token", **cfg)
    _, gf, _ = train(tok, teacher, student, loss_path="full", **kw)
    _, gc, _ = train(tok, teacher, student, loss_path="chunked", **kw)
    assert_grads_close(gc[0], gf[0], "chunked vs full with parameters")
    _, g1, _ = train(
        tok,
        teacher,
        student,
        loss_path="chunked",
        items=items,
        tmp_path=tmp_path,
        reduction="token",
        method="distillm2",
        loss_type="distillm_v1",
        beta=0.7,
        alpha=0.3,
    )
    assert any(not torch.allclose(gc[0][n], g1[0][n], rtol=1e-4, atol=1e-7) for n in gc[0]), "τ ignored"


def test_gradual_beta_follows_the_schedule(tok, teacher, student, tmp_path):
    trainer, _, _ = train(
        tok,
        teacher,
        student,
        method="distillm2",
        loss_path="chunked",
        steps=4,
        batch=2,
        tmp_path=tmp_path,
        gradual_beta=True,
    )
    logged = [h["distillm2/beta"] for h in trainer.state.log_history if "distillm2/beta" in h]
    assert logged == [distillm2_gradual_beta(s, 4) for s in range(4)] == [1.0, 1.25, 1.5, 1.5]


@pytest.mark.parametrize("lmbda", [0.0, 1.0])
def test_lmbda_extremes_train_on_one_kind(tok, teacher, student, tmp_path, lmbda):
    trainer, _, _ = train(
        tok,
        teacher,
        student,
        method="gkd",
        loss_path="chunked",
        steps=2,
        batch=2,
        tmp_path=tmp_path,
        lmbda=lmbda,
    )
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert all(("length/sgo_mean" in h) == (lmbda == 1.0) for h in logs)
    assert all(("length/tgo_mean" in h) == (lmbda == 0.0) for h in logs)
    assert all(h["lmbda/on_policy_step"] == lmbda for h in logs)


def test_lmbda_mixes_steps_reproducibly_and_keeps_accumulation_exact(tok, teacher, student, tmp_path):
    kw = dict(method="gkd", loss_path="chunked", batch=2, tmp_path=tmp_path, lmbda=0.5, beta=0.7)
    a, _, _ = train(tok, teacher, student, steps=8, **kw)
    b, _, _ = train(tok, teacher, student, steps=8, **kw)
    kinds_a = [h["lmbda/on_policy_step"] for h in a.state.log_history if "loss" in h]
    kinds_b = [h["lmbda/on_policy_step"] for h in b.state.log_history if "loss" in h]
    assert kinds_a == kinds_b
    assert 0.0 in kinds_a
    assert 1.0 in kinds_a
    items = make_items(tok, n=8)
    _, g1, _ = train(tok, teacher, student, steps=1, items=items, **{**kw, "batch": 4}, reduction="token")
    _, g2, _ = train(tok, teacher, student, steps=1, items=items, ga=2, **kw, reduction="token")
    assert_grads_close(g2[0], g1[0], "lmbda step, GA=2 vs one batch")


def test_config_validation_of_the_peer_options():
    with pytest.raises(ValueError, match="method 'kd' takes no parameter 'beta'"):
        ASKDConfig(method="kd", sgo_regime="none", beta=0.5)
    with pytest.raises(ValueError, match="loss_temperature must be a positive finite float"):
        ASKDConfig(loss_temperature=0.0)
    with pytest.raises(ValueError, match="reduction must be 'sample' or 'token'"):
        ASKDConfig(reduction="mean")
    with pytest.raises(ValueError, match="gradual_beta is DistiLLM-2's schedule"):
        ASKDConfig(method="gkd", gradual_beta=True)
    with pytest.raises(ValueError, match="do not also give a fixed beta"):
        ASKDConfig(method="distillm2", gradual_beta=True, beta=1.2)
    with pytest.raises(ValueError, match="lmbda must lie in"):
        ASKDConfig(method="gkd", lmbda=1.5)
    with pytest.raises(ValueError, match="needs sgo_regime='on_policy'"):
        ASKDConfig(method="gkd", lmbda=0.5, sgo_regime="batched")
    with pytest.raises(ValueError, match="trains on one kind"):
        ASKDConfig(method="rkl", lmbda=0.5)


def test_run_file_takes_the_peer_options_and_a_distill_run_finishes(tmp_path, monkeypatch):
    """The ``loss:`` and ``sgo:`` blocks carry them; a short `askd distill` run uses them."""
    import yaml

    from askd_ref.engine.run import load_run_config, run_distill
    from tests.test_recipes import _data, _tiny_models

    dirs = _tiny_models(tmp_path)
    _data(tmp_path, code=False)
    raw = {
        "teacher": dirs["teacher"],
        "student": dirs["student"],
        "data": {"train": "train.jsonl"},
        "method": "distillm2",
        "quality": "exact_match",
        "sgo": {"regime": "on_policy", "max_new_tokens": 4, "temperature": 1.0},
        "loss": {
            "path": "chunked",
            "temperature": 2.0,
            "reduction": "token",
            "alpha": 0.2,
            "loss_type": "distillm_v1",
            "gradual_beta": True,
        },
        "training": {
            "output_dir": "run",
            "max_steps": 2,
            "per_device_train_batch_size": 2,
            "logging_steps": 1,
            "report_to": ["tensorboard"],
        },
        "log_samples": {"every": 1, "count": 1},
    }
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg = load_run_config(path)
    a = cfg.askd
    assert (a.loss_temperature, a.temperature, a.reduction, a.alpha, a.loss_type, a.gradual_beta) == (
        2.0,
        1.0,
        "token",
        0.2,
        "distillm_v1",
        True,
    )
    metrics = run_distill(cfg, progress=False)
    assert metrics["global_step"] == 2
    logs = [h for h in metrics["log_history"] if "loss" in h]
    assert [h["distillm2/beta"] for h in logs] == [1.0, 1.5]
    samples = (tmp_path / "run" / "samples.jsonl").read_text().splitlines()
    assert len(samples) == 4  # 2 steps × (1 TGO + 1 SGO)
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    del raw["log_samples"], raw["training"]["report_to"]
    raw["loss"]["beta"] = 0.3  # with gradual_beta: rejected, naming the file
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match=r"run\.yaml: gradual_beta sets beta"):
        load_run_config(path)
    raw["loss"] = {"temprature": 2.0}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match=r"unknown key 'temprature' in 'loss'; did you mean 'temperature'\?"):
        load_run_config(path)
    raw["loss"] = {}
    raw["method"] = "gkd"
    raw["sgo"]["lmbda"] = 0.5
    path.write_text(yaml.safe_dump(raw))
    assert load_run_config(path).askd.lmbda == 0.5
