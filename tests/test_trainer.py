"""ASKDTrainer: gradient-accumulation equivalence, chunked = full, masking, padded vocabularies,
frozen teacher, SGO regimes, diagnostics, determinism. Tiny models, CPU, one thread."""

import copy
import dataclasses

import pytest
import torch
from transformers import TrainerCallback, TrainingArguments

from askd_ref import METHODS, compiled
from askd_ref.engine.config import ASKDConfig
from askd_ref.engine.forward import check_same_tokenizer
from askd_ref.engine.items import PromptItem, Response, prompt_items_from_samples
from askd_ref.engine.tokens import encode_response
from askd_ref.engine.trainer import ASKDTrainer
from askd_ref.options import ASKDOptions
from askd_ref.porting.tolerances import assert_close, tolerance
from askd_ref.toy import Problem, ToyTask, build_tokenizer, tiny_llama

HAVE_CC = compiled.has_compiler()
TOL = tolerance(torch.float32, "grad")



@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


@pytest.fixture(scope="module")
def teacher(tok):
    return tiny_llama(tok, hidden_size=16, num_layers=1, num_heads=2, seed=11)


@pytest.fixture(scope="module")
def student(tok):
    return tiny_llama(tok, hidden_size=16, num_layers=1, num_heads=2, seed=12)


def make_items(tok, n=8, tgos_per_prompt=1):
    """Prompts with reference-solution TGOs, every third one corrupted (quality 0)."""
    _, problems = ToyTask().split(seed=7, n_eval=n)
    items = []
    for i, p in enumerate(problems):
        tgos = []
        for j in range(tgos_per_prompt):
            text = p.solution if (i + j) % 3 else p.solution[:-1] + str((int(p.solution[-1]) + 1) % 10)
            tgos.append(Response(text=text))
        items.append(PromptItem(index=i, prompt=p.prompt, reference=p.reference, tgos=tuple(tgos)))
    return items


class GradCapture(TrainerCallback):
    def __init__(self):
        self.grads = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.grads.append(
            {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
        )


def train(
    tok,
    teacher,
    student,
    *,
    method="askd",
    regime="on_policy",
    loss_path="full",
    batch=4,
    ga=1,
    steps=1,
    items=None,
    tmp_path,
    options=None,
    epochs=None,
    quality="exact_match",
    seed=0,
    optim="sgd",
    lr=0.1,
    logging_steps=1,
    **config_kw,
):
    model = copy.deepcopy(student)
    cfg = ASKDConfig(
        method=method,
        options=options or ASKDOptions(),
        sgo_regime=regime if METHOD_SGO[method] else "none",
        loss_path=loss_path,
        max_new_tokens=6,
        chunk_size=7,
        quality=quality,
        **config_kw,
    )
    kw = {"num_train_epochs": epochs} if epochs is not None else {"max_steps": steps}
    args = TrainingArguments(
        output_dir=str(tmp_path / f"run-{method}-{regime}-{loss_path}-{batch}-{ga}"),
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=ga,
        learning_rate=lr,
        lr_scheduler_type="constant",
        optim=optim,
        max_grad_norm=0.0,
        logging_steps=logging_steps,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=seed,
        **kw,
    )
    cap = GradCapture()
    trainer = ASKDTrainer(
        model=model,
        teacher=teacher,
        args=args,
        config=cfg,
        train_dataset=items or make_items(tok),
        processing_class=tok,
        callbacks=[cap],
    )
    trainer.train()
    return trainer, cap.grads, model


METHOD_SGO = {m: m not in ("seqkd", "kd") for m in METHODS}


def assert_grads_close(a, b, what):
    assert a.keys() == b.keys()
    for name in a:
        assert_close(a[name], b[name], TOL, what=f"{what}: {name}")


@pytest.mark.parametrize(
    ("method", "regime", "loss_path"),
    [
        ("askd", "on_policy", "full"),
        ("askd", "on_policy", "chunked"),
        ("askd", "batched", "chunked"),
        ("askd-dense", "on_policy", "chunked"),
        ("distillm2", "on_policy", "full"),
        ("seqkd", "none", "chunked"),
        ("advantage_kd", "on_policy", "chunked"),
        ("gkd", "batched", "full"),
    ],
)
def test_gradient_accumulation_equals_one_large_batch(
    tok, teacher, student, tmp_path, method, regime, loss_path
):
    """One step over 4 prompts == 2 accumulated micro-batches of 2 (same samples, global counts)."""
    items = make_items(tok, n=8, tgos_per_prompt=2)
    one, g1, m1 = train(
        tok,
        teacher,
        student,
        method=method,
        regime=regime,
        loss_path=loss_path,
        batch=4,
        ga=1,
        items=items,
        tmp_path=tmp_path,
        sgo_per_prompt=2,
    )
    two, g2, m2 = train(
        tok,
        teacher,
        student,
        method=method,
        regime=regime,
        loss_path=loss_path,
        batch=2,
        ga=2,
        items=items,
        tmp_path=tmp_path,
        sgo_per_prompt=2,
    )
    assert len(g1) == len(g2) == 1
    assert_grads_close(g2[0], g1[0], f"{method}/{regime}/{loss_path} GA=2 vs one batch")
    for (n, p1), (_, p2) in zip(m1.named_parameters(), m2.named_parameters(), strict=True):
        assert_close(p2, p1, TOL, what=f"parameter {n} after one SGD step")
    l1 = [h["loss"] for h in one.state.log_history if "loss" in h]
    l2 = [h["loss"] for h in two.state.log_history if "loss" in h]
    assert l1 == pytest.approx(l2, rel=1e-5, abs=1e-6)
    # the check is sensitive: a per-micro-batch normalisation would double every gradient
    assert any(float(g.abs().max()) > 1e-4 for g in g1[0].values())


def assert_trains_alike(tok, teacher, student, tmp_path, method, **variants):
    """Train ``method`` twice on the same items, once with each of the two config variants
    (``name=dict(...)``): the logged losses and the gradients agree within the float32 table."""
    items = make_items(tok, n=4, tgos_per_prompt=2)
    (name_a, kw_a), (name_b, kw_b) = variants.items()
    run_a, run_b = (
        train(tok, teacher, student, method=method, items=items, tmp_path=tmp_path, sgo_per_prompt=2, **kw)
        for kw in (kw_a, kw_b)
    )
    (ta, ga, _), (tb, gb, _) = run_a, run_b
    la = [h["loss"] for h in ta.state.log_history if "loss" in h]
    lb = [h["loss"] for h in tb.state.log_history if "loss" in h]
    assert la == pytest.approx(lb, rel=TOL.rtol, abs=TOL.atol)
    assert_grads_close(gb[0], ga[0], f"{method}: {name_b} vs {name_a}")


@pytest.mark.parametrize("method", METHODS)
def test_chunked_and_full_loss_paths_agree(tok, teacher, student, tmp_path, method):
    full, chunked = {"loss_path": "full"}, {"loss_path": "chunked"}
    assert_trains_alike(tok, teacher, student, tmp_path, method, full=full, chunked=chunked)


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler for loss_kernel='compiled'")
@pytest.mark.parametrize("method", ["askd", "gkd"])
def test_compiled_loss_kernel_trains_like_the_fused_one(tok, teacher, student, tmp_path, method):
    """``ASKDConfig(loss_kernel="compiled")`` reaches the chunked loss: same losses and gradients
    as the default kernel (within the float32 table); a bad name is refused."""
    assert_trains_alike(
        tok,
        teacher,
        student,
        tmp_path,
        method,
        fused={"loss_path": "chunked", "loss_kernel": "fused"},
        compiled={"loss_path": "chunked", "loss_kernel": "compiled"},
    )
    with pytest.raises(ValueError, match="loss_kernel must be 'fused', 'compiled' or 'core'"):
        ASKDConfig(loss_kernel="triton")  # type: ignore[arg-type]


def test_padded_vocabulary_heads_are_sliced(tok, teacher, student, tmp_path):
    """A teacher/student with extra (padded) head rows trains exactly like the unpadded ones."""
    padded_t = copy.deepcopy(teacher)
    padded_t.resize_token_embeddings(len(tok) + 9)
    padded_s = copy.deepcopy(student)
    padded_s.resize_token_embeddings(len(tok) + 5)
    with torch.no_grad():
        padded_t.lm_head.weight[len(tok) :] = 30.0  # would dominate every softmax if not sliced
        padded_s.lm_head.weight[len(tok) :] = -30.0
    for method in ("askd", "askd-dense"):
        for path in ("full", "chunked"):
            _, g_ref, _ = train(tok, teacher, student, method=method, loss_path=path, tmp_path=tmp_path)
            _, g_pad, _ = train(tok, padded_t, padded_s, method=method, loss_path=path, tmp_path=tmp_path)
            for name, g in g_ref[0].items():
                gp = g_pad[0][name]
                if gp.shape != g.shape:  # embedding / head: compare the shared-vocabulary rows
                    assert float(gp[len(tok) :].abs().max()) == 0.0, f"{name}: padded rows got gradient"
                    gp = gp[: len(tok)]
                assert_close(gp, g, TOL, what=f"{method}/{path} padded vs unpadded: {name}")


def test_a_real_vocabulary_mismatch_is_an_error(tok, teacher, tmp_path):
    small = tiny_llama(build_tokenizer("0123456789+=>"), hidden_size=8, num_layers=1, num_heads=2)
    args = TrainingArguments(output_dir=str(tmp_path / "x"), max_steps=1, report_to=[], use_cpu=True)
    with pytest.raises(ValueError, match=r"output head of .* rows but the shared tokenizer has"):
        ASKDTrainer(
            model=small,
            teacher=teacher,
            args=args,
            config=ASKDConfig(),
            train_dataset=make_items(tok),
            processing_class=tok,
        )
    with pytest.raises(ValueError, match="tokenizers differ"):
        check_same_tokenizer(build_tokenizer("0123456789+=>"), tok)
    check_same_tokenizer(tok, build_tokenizer())


def test_teacher_is_frozen_in_eval_mode(tok, teacher, student, tmp_path):
    before = {n: p.detach().clone() for n, p in teacher.named_parameters()}
    trainer, _, _ = train(tok, teacher, student, method="askd-dense", steps=2, tmp_path=tmp_path)
    assert trainer.teacher.training is False
    assert all(not p.requires_grad for p in trainer.teacher.parameters())
    for n, p in teacher.named_parameters():
        assert torch.equal(p, before[n]), n
        assert p.grad is None


def test_samples_are_independent_of_their_batch_mates(tok, teacher, student):
    """Prompt and padding positions are masked: a padded batch's loss is the sum of per-row losses."""
    import askd_ref.engine.trainer as tr

    args = TrainingArguments(output_dir="unused", report_to=[], use_cpu=True)
    items = make_items(tok, n=2)
    trainer = ASKDTrainer(
        model=copy.deepcopy(student),
        teacher=teacher,
        args=args,
        config=ASKDConfig(sgo_regime="offline", loss_path="full", method="askd"),
        train_dataset=[
            dataclasses.replace(it, sgos=(Response("9", behaviour_logprob=-3.0),)) for it in items
        ],
        processing_class=tok,
    )
    short = tr._Row(items[0], Response("1>1"), True, tuple(encode_response(tok, "1>1")), 1.0)
    long_ = tr._Row(
        items[1], Response("1234567>7654321"), True, tuple(encode_response(tok, "1234567>7654321")), 0.0
    )
    counts = (2, 0)  # both rows belong to one optimizer step of 2 TGOs
    both = trainer.loss_from_rows(trainer.model, [short, long_], counts).loss
    alone = (
        trainer.loss_from_rows(trainer.model, [short], counts).loss
        + trainer.loss_from_rows(trainer.model, [long_], counts).loss
    )
    assert_close(both, alone, tolerance(torch.float32, "value"), what="padded batch vs rows alone")


def test_loss_diagnostics_are_logged(tok, teacher, student, tmp_path):
    trainer, _, _ = train(tok, teacher, student, method="askd", steps=2, tmp_path=tmp_path)
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 2
    for key in (
        "tgo/w",
        "tgo/alpha",
        "sgo/c_hat",
        "sgo/gate",
        "quality/tgo_mean",
        "quality/sgo_mean",
        "askd/num_tgo",
        "length/sgo_mean",
    ):
        assert key in logs[0], key
    # the 2 steps × 4 prompts cover all 8 prompts once; prompts 0, 3 and 6 have a wrong TGO
    assert (logs[0]["quality/tgo_mean"] + logs[1]["quality/tgo_mean"]) / 2 == pytest.approx(5 / 8)


def test_batched_regime_samples_a_pool_per_epoch_with_ratio_one_at_its_start(tok, teacher, student, tmp_path):
    trainer, _, _ = train(
        tok,
        teacher,
        student,
        method="askd",
        regime="batched",
        batch=4,
        epochs=2,
        items=make_items(tok, n=8),
        tmp_path=tmp_path,
        lr=0.5,
    )
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 4  # 2 steps per epoch, 2 epochs
    assert trainer._pool_epoch == 1
    assert logs[0]["sgo/is_ratio"] == pytest.approx(1.0, abs=1e-4)  # behaviour = current student
    assert logs[2]["sgo/is_ratio"] == pytest.approx(1.0, abs=1e-4)  # fresh pool at the next epoch
    assert abs(logs[1]["sgo/is_ratio"] - 1.0) > 1e-5  # one step later the student has moved


def test_offline_regime_needs_behaviour_logprobs(tok, teacher, student, tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path / "o"), report_to=[], use_cpu=True)
    items = [dataclasses.replace(it, sgos=(Response("1>1"),)) for it in make_items(tok, n=2)]
    with pytest.raises(ValueError, match="behaviour_logprob"):
        ASKDTrainer(
            model=student,
            teacher=teacher,
            args=args,
            config=ASKDConfig(sgo_regime="offline"),
            train_dataset=items,
            processing_class=tok,
        )
    no_tgo = [dataclasses.replace(it, tgos=()) for it in make_items(tok, n=2)]
    with pytest.raises(ValueError, match="no teacher-generated output"):
        ASKDTrainer(
            model=student,
            teacher=teacher,
            args=args,
            config=ASKDConfig(),
            train_dataset=no_tgo,
            processing_class=tok,
        )


def test_offline_sgos_from_sample_files(tok, teacher, student, tmp_path):
    from askd_ref.engine.data import Prompt
    from askd_ref.engine.generation import generate_samples

    problems = [Problem(a, 7) for a in (3, 14, 59, 26)]
    prompts = [Prompt(p.prompt, reference=p.reference) for p in problems]
    tgos = generate_samples(teacher, tok, prompts, source="teacher", max_new_tokens=6, seed=0)
    sgos = generate_samples(student, tok, prompts, source="student", max_new_tokens=6, seed=1)
    items = prompt_items_from_samples([*tgos, *sgos])
    assert [len(it.tgos) for it in items] == [1] * 4
    assert all(it.sgos[0].token_ids for it in items)
    trainer, _, _ = train(
        tok, teacher, student, method="askd", regime="offline", items=items, tmp_path=tmp_path
    )
    log = next(h for h in trainer.state.log_history if "loss" in h)
    assert log["sgo/is_ratio"] == pytest.approx(1.0, abs=1e-4)  # μ = the (unchanged) student at step 1


def test_teacher_likelihood_quality_from_the_trainers_teacher_pass(tok, teacher, student, tmp_path):
    # "likelihood" is the signal's alias: the trainer computes it too, whatever the spelling
    cases = (("full", "teacher_likelihood"), ("chunked", "teacher_likelihood"), ("full", "likelihood"))
    for path, name in cases:
        trainer, _, _ = train(
            tok,
            teacher,
            student,
            method="askd",
            quality=name,
            loss_path=path,
            tmp_path=tmp_path,
        )
        log = next(h for h in trainer.state.log_history if "loss" in h)
        assert 0.0 < log["tgo/alpha"] < 0.9  # r = exp(mean log p) ∈ (0, 1) moved α off α_T(0) = 0.9


def test_fixed_seed_gives_a_bitwise_identical_loss_trajectory(tok, teacher, student, tmp_path):
    """Issue 7: the same seed reproduces the toy distillation's losses bit for bit on CPU."""
    runs = []
    for k in range(2):
        trainer, _, model = train(
            tok,
            teacher,
            student,
            method="askd",
            steps=6,
            optim="adamw_torch",
            lr=1e-2,
            tmp_path=tmp_path / str(k),
        )
        runs.append(([h["loss"] for h in trainer.state.log_history if "loss" in h], model))
    (la, ma), (lb, mb) = runs
    assert len(la) == 6
    assert la == lb
    for pa, pb in zip(ma.parameters(), mb.parameters(), strict=True):
        assert torch.equal(pa, pb)
    other, _, _ = train(
        tok,
        teacher,
        student,
        method="askd",
        steps=6,
        optim="adamw_torch",
        lr=1e-2,
        seed=1,
        tmp_path=tmp_path / "s1",
    )
    assert [h["loss"] for h in other.state.log_history if "loss" in h] != la


def test_config_validation():
    with pytest.raises(ValueError, match="method must be one of"):
        ASKDConfig(method="ppo")
    with pytest.raises(ValueError, match="sgo_regime"):
        ASKDConfig(sgo_regime="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="loss_path"):
        ASKDConfig(loss_path="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="trains on SGOs"):
        ASKDConfig(method="askd", sgo_regime="none")
    with pytest.raises(ValueError, match="sgo_per_prompt"):
        ASKDConfig(sgo_per_prompt=0)
    assert ASKDConfig(options=ASKDOptions(lambda_dense=0.5)).needs.full
