"""JSONL sample and prompt files (spec §8): round trip, errors naming file and line, skip flag."""

import json
import warnings
from pathlib import Path

import pytest

from askd_ref.engine.data import (
    BadLinesSkipped,
    Prompt,
    RecordList,
    Sample,
    read_prompts,
    read_samples,
    write_samples,
)

GOOD = {"prompt": "2+2=", "response": "4", "source": "teacher"}


def _write_lines(path: Path, lines: list[str], *, final_newline: bool = True) -> Path:
    path.write_text("\n".join(lines) + ("\n" if final_newline else ""), encoding="utf-8")
    return path


def test_round_trip_keeps_every_field_and_unknown_fields(tmp_path: Path) -> None:
    samples = [
        Sample("2+2=", "4", "teacher"),
        Sample(
            "écris 1+1",
            "deux ✓\nline two",
            "student",
            quality=0.25,
            reference="2",
            tests="assert f() == 2",
            behaviour_logprob=-3.5,
            extra={"id": 17, "meta": {"nested": [1, 2.5, None, "x"]}, "flag": True},
        ),
        Sample("q", "r", "student", quality=0.0, extra={"quality_source": "exact_match"}),
        Sample("q", "r", "teacher", quality=1),
    ]
    path = tmp_path / "sub" / "samples.jsonl"
    assert write_samples(path, samples) == 4
    back = read_samples(path)
    assert list(back) == samples
    assert back.skipped == []
    assert back.skipped_report() == ""
    # unknown fields are written back unchanged, and None fields are omitted
    first, second = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[:2])
    assert first == GOOD
    assert second["meta"] == {"nested": [1, 2.5, None, "x"]}
    assert second["id"] == 17
    # writing what was read gives the same bytes
    again = tmp_path / "again.jsonl"
    write_samples(again, back)
    assert again.read_bytes() == path.read_bytes()


def test_null_optional_fields_and_blank_lines_are_accepted(tmp_path: Path) -> None:
    rec = {**GOOD, "quality": None, "reference": None, "tests": None, "behaviour_logprob": None}
    path = _write_lines(tmp_path / "a.jsonl", ["", json.dumps(rec), "   ", json.dumps(GOOD)])
    assert read_samples(path) == [Sample("2+2=", "4", "teacher")] * 2


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    assert read_samples(path) == []


BAD_LINES = [
    (json.dumps({"prompt": "p", "response": "r"}), "missing required field 'source'"),
    (json.dumps({"response": "r", "source": "teacher"}), "missing required field 'prompt'"),
    (json.dumps({**GOOD, "prompt": 3}), "field 'prompt' must be a string, got number"),
    (json.dumps({**GOOD, "response": None}), "field 'response' must be a string, got null"),
    (json.dumps({**GOOD, "source": "robot"}), "field 'source' must be 'teacher' or 'student'"),
    (json.dumps({**GOOD, "quality": 1.5}), r"field 'quality' must be in \[0, 1\], got 1.5"),
    (json.dumps({**GOOD, "quality": -0.1}), r"field 'quality' must be in \[0, 1\]"),
    (json.dumps({**GOOD, "quality": "0.5"}), "field 'quality' must be a number or null, got string"),
    (json.dumps({**GOOD, "quality": True}), "field 'quality' must be a number or null, got boolean"),
    ('{"prompt": "p", "response": "r", "source": "teacher", "quality": NaN}', "NaN is not valid JSON"),
    ('{"prompt": "p", "response": "r", "source": "teacher", "behaviour_logprob": -Infinity}', "Infinity"),
    (json.dumps({**GOOD, "tests": ["assert 1"]}), "field 'tests' must be a string, got array"),
    (json.dumps({**GOOD, "reference": 4}), "field 'reference' must be a string, got number"),
    (json.dumps({**GOOD, "extra": {}}), "field name 'extra' is reserved"),
    (json.dumps([1, 2]), "must be a JSON object, got array"),
    ('{"prompt": "p", "response": "r", "sour', "corrupt or truncated JSON"),
    ("not json at all", "corrupt or truncated JSON"),
]


@pytest.mark.parametrize(("bad", "message"), BAD_LINES)
def test_bad_line_names_file_and_line(tmp_path: Path, bad: str, message: str) -> None:
    path = _write_lines(tmp_path / "data.jsonl", [json.dumps(GOOD), "", bad, json.dumps(GOOD)])
    with pytest.raises(ValueError, match=r"data\.jsonl, line 3: .*" + message) as info:
        read_samples(path)
    assert str(path) in str(info.value)
    assert "skip_bad_lines=True" in str(info.value)


def test_truncated_last_line_is_reported(tmp_path: Path) -> None:
    full = json.dumps({**GOOD, "response": "a long response"})
    path = _write_lines(tmp_path / "t.jsonl", [json.dumps(GOOD), full[: len(full) // 2]], final_newline=False)
    with pytest.raises(ValueError, match=r"t\.jsonl, line 2: corrupt or truncated JSON.*truncated\?"):
        read_samples(path)


def test_invalid_utf8_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "u.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + b'{"prompt": "\xff"}\n')
    with pytest.raises(ValueError, match=r"u\.jsonl, line 2: not valid UTF-8"):
        read_samples(path)


def test_skip_bad_lines_reports_the_count(tmp_path: Path) -> None:
    lines = [json.dumps(GOOD)]
    for bad, _ in BAD_LINES:
        lines += [bad, json.dumps({**GOOD, "response": str(len(lines))})]
    path = _write_lines(tmp_path / "mixed.jsonl", lines)
    with pytest.warns(BadLinesSkipped, match=rf"skipped {len(BAD_LINES)} bad line\(s\)") as record:
        got = read_samples(path, skip_bad_lines=True)
    assert len(record) == 1
    assert isinstance(got, RecordList)
    assert len(got) == 1 + len(BAD_LINES)
    assert got.num_skipped == len(BAD_LINES)
    assert [b.line for b in got.skipped] == list(range(2, 2 * len(BAD_LINES) + 1, 2))
    assert got.skipped[0].path == str(path)
    assert "mixed.jsonl, line 2: missing required field 'source'" in got.skipped_report()
    assert f"read {len(got)} samples" in str(record[0].message)


def test_no_warning_when_nothing_skipped(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "ok.jsonl", [json.dumps(GOOD)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_samples(path, skip_bad_lines=True).num_skipped == 0


def test_write_is_atomic_and_validates(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    write_samples(path, [Sample("p", "r", "teacher")])
    before = path.read_bytes()
    bad = [Sample("p", "r", "teacher"), Sample("p2", "r", "student", quality=2.0)]
    with pytest.raises(ValueError, match=r"samples\[1\] \(prompt 'p2'\).*quality"):
        write_samples(path, bad)
    assert path.read_bytes() == before  # the previous file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # no temp file left behind
    with pytest.raises(ValueError, match="reuse the schema field names"):
        write_samples(path, [Sample("p", "r", "teacher", extra={"quality": 1.0})])
    with pytest.raises(ValueError, match="not JSON serializable"):
        write_samples(path, [Sample("p", "r", "teacher", extra={"obj": object()})])
    with pytest.raises(ValueError, match="must be finite"):
        write_samples(path, [Sample("p", "r", "teacher", behaviour_logprob=float("nan"))])
    with pytest.raises(TypeError, match=r"samples\[0\] must be a Sample"):
        write_samples(path, [GOOD])  # type: ignore[list-item]
    assert path.read_bytes() == before


def test_read_prompts(tmp_path: Path) -> None:
    lines = [
        json.dumps({"prompt": "12+7=", "reference": "19", "id": 1}),
        json.dumps({"prompt": "def f():", "tests": "assert f() == 1"}),
        json.dumps({**GOOD, "quality": 0.5}),  # a sample file works as a prompt file
    ]
    path = _write_lines(tmp_path / "prompts.jsonl", lines)
    prompts = read_prompts(path)
    assert prompts == [
        Prompt("12+7=", reference="19", extra={"id": 1}),
        Prompt("def f():", tests="assert f() == 1"),
        Prompt("2+2=", extra={"quality": 0.5}),
    ]
    sample = prompts[0].to_sample("19", "student", behaviour_logprob=-1.0)
    assert sample == Sample("12+7=", "19", "student", reference="19", behaviour_logprob=-1.0, extra={"id": 1})
    bad = _write_lines(tmp_path / "bad.jsonl", [lines[0], json.dumps({"reference": "1"})])
    with pytest.raises(ValueError, match=r"bad\.jsonl, line 2: missing required field 'prompt'"):
        read_prompts(bad)
    with pytest.warns(BadLinesSkipped, match="skipped 1 bad line"):
        assert len(read_prompts(bad, skip_bad_lines=True)) == 1


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_samples(tmp_path / "nope.jsonl")
