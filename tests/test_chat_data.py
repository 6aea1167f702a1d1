"""Chat data: ``messages`` records, prompts rendered with the chat template and one BOS, and
``datasets.Dataset`` training data. A tiny character tokenizer with a template, built locally."""

import json

import pytest
import torch
from transformers import TrainingArguments

from askd_ref.engine.config import ASKDConfig
from askd_ref.engine.data import Sample, read_samples, write_samples
from askd_ref.engine.items import prompt_items_from_records
from askd_ref.engine.tokens import encode_prompt, render_chat_prompt, render_chat_prompts
from askd_ref.engine.trainer import ASKDTrainer
from askd_ref.toy import build_tokenizer, tiny_llama

#: A Jinja chat template that starts with the BOS token, as most model templates do.
TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}|{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}|assistant>{% endif %}"
)
CHAT = [
    {"role": "system", "content": "add"},
    {"role": "user", "content": "12+7="},
    {"role": "assistant", "content": "19"},
]


@pytest.fixture(scope="module")
def tok():
    t = build_tokenizer()
    t.chat_template = TEMPLATE
    return t


def test_messages_record_reads_as_a_teacher_sample():
    s = Sample.from_record({"messages": CHAT, "reference": "19"})
    assert (s.response, s.source, s.reference) == ("19", "teacher", "19")
    assert s.extra["messages"] == CHAT
    assert json.loads(s.prompt) == CHAT[:-1]  # placeholder until rendered


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        (CHAT[:-1], "must end with the assistant response"),
        ([CHAT[-1]], "at least one message before"),
        ("hi", "must be a non-empty list"),
        ([{"role": "user"}, CHAT[-1]], r"messages\[0\] must be an object with string 'role' and 'content'"),
    ],
)
def test_bad_messages_are_named(messages, match):
    with pytest.raises(ValueError, match=match):
        Sample.from_record({"messages": messages})


def test_rendered_prompt_keeps_exactly_one_bos(tok):
    text = render_chat_prompt(tok, CHAT[:-1])
    assert text == "<s>|system>add|user>12+7=|assistant>"
    ids = encode_prompt(tok, text)
    assert ids[0] == tok.bos_token_id
    assert ids.count(tok.bos_token_id) == 1
    assert tok.decode(ids, skip_special_tokens=True) == "|system>add|user>12+7=|assistant>"
    # the plain-text convention is unchanged: BOS is added to a prompt that has none
    assert encode_prompt(tok, "12+7=") == [
        tok.bos_token_id,
        *tok("12+7=", add_special_tokens=False)["input_ids"],
    ]


def test_a_tokenizer_without_a_template_is_an_error():
    with pytest.raises(ValueError, match="needs a tokenizer with a chat_template"):
        render_chat_prompt(build_tokenizer(), CHAT[:-1])


def test_chat_records_round_trip_through_files(tok, tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"messages": CHAT, "reference": "19"}) + "\n")
    (sample,) = render_chat_prompts(read_samples(path), tok)
    assert sample.prompt == "<s>|system>add|user>12+7=|assistant>"
    write_samples(tmp_path / "out.jsonl", [sample])
    (again,) = render_chat_prompts(read_samples(tmp_path / "out.jsonl"), tok)
    assert again == sample


def test_trainer_takes_a_datasets_dataset_of_chats(tok, tmp_path):
    datasets = pytest.importorskip("datasets", reason="datasets is not installed")
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"{a}+{b}="},
                {"role": "assistant", "content": str(a + b)},
            ],
            "reference": str(a + b),
        }
        for a, b in [(1, 2), (3, 4), (10, 5), (7, 7)]
    ]
    data = datasets.Dataset.from_list(rows)
    items = prompt_items_from_records(data, tok)
    assert [it.prompt for it in items][:2] == ["<s>|user>1+2=|assistant>", "<s>|user>3+4=|assistant>"]
    teacher = tiny_llama(tok, hidden_size=16, num_layers=1, num_heads=2, seed=1)
    student = tiny_llama(tok, hidden_size=16, num_layers=1, num_heads=2, seed=2)
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        per_device_train_batch_size=2,
        max_steps=2,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        save_strategy="no",
        logging_steps=1,
    )
    cfg = ASKDConfig(method="askd", max_new_tokens=4, chunk_size=8)
    trainer = ASKDTrainer(
        model=student, teacher=teacher, args=args, config=cfg, train_dataset=data, processing_class=tok
    )
    assert [it.prompt for it in trainer.prompt_dataset.items] == [it.prompt for it in items]
    batch = trainer._token_batch(trainer._rows(trainer.prompt_dataset.items[:2], (True, False)))
    assert bool((batch.input_ids[:, 0] == tok.bos_token_id).all())
    assert int((batch.input_ids == tok.bos_token_id).sum()) == 2  # one BOS per row
    trainer.train()
    assert trainer.state.global_step == 2
    assert all(torch.isfinite(p).all() for p in student.parameters())


def test_distill_run_on_a_messages_file(tok, tmp_path):
    """``askd distill`` on a JSONL of chat records finishes on CPU."""
    import yaml

    from askd_ref.engine.run import load_run_config, run_distill

    dirs = {}
    for name, seed in (("teacher", 1), ("student", 2)):
        model = tiny_llama(tok, hidden_size=16, num_layers=1, num_heads=2, seed=seed, max_positions=256)
        model.save_pretrained(tmp_path / name)
        tok.save_pretrained(tmp_path / name)
        dirs[name] = str(tmp_path / name)
    lines = [
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": f"{a}+{a}="},
                    {"role": "assistant", "content": str(2 * a)},
                ],
                "reference": str(2 * a),
            }
        )
        for a in range(4)
    ]
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    raw = {
        "teacher": dirs["teacher"],
        "student": dirs["student"],
        "data": {"train": "train.jsonl"},
        "method": "distillm2",
        "sgo": {"max_new_tokens": 4},
        "loss": {"reduction": "token"},
        "training": {
            "output_dir": "run",
            "max_steps": 2,
            "per_device_train_batch_size": 2,
            "logging_steps": 1,
        },
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(raw))
    metrics = run_distill(load_run_config(tmp_path / "run.yaml"), progress=False)
    assert metrics["global_step"] == 2
    assert all(h["loss"] == h["loss"] for h in metrics["log_history"] if "loss" in h)  # finite, not NaN
