"""Sample records (spec §8): the unit of data every other part of askd-ref exchanges.

One record per line in JSONL files: ``prompt``, ``response``, ``source`` ∈ {teacher, student},
optional ``quality``, ``reference`` (answer), ``tests`` (code), ``behaviour_logprob`` (Σ over
response tokens of log μ(y_t|c_t), for off-policy SGOs, E13). Unknown fields are kept in
``extra`` and written back unchanged.

Chat records: instead of ``prompt`` and ``response`` a record may carry ``messages``, a list of
``{"role": ..., "content": ...}`` whose last message is the ``assistant`` response; ``source``
then defaults to ``"teacher"``. The messages are kept in ``extra["messages"]`` and the prompt
text is a placeholder (the JSON of the prompt messages) until
:func:`askd_ref.engine.tokens.render_chat_prompts` renders it with the tokenizer's chat template
(the trainer and ``askd distill`` do).

Reading and writing use only the standard library: :func:`read_samples` /
:func:`write_samples` for sample files, :func:`read_prompts` for the prompt files ``askd
generate`` starts from. A bad line (corrupt or truncated JSON, not an object, a missing required
field, a wrong type, an invalid ``source``, a quality outside [0, 1], NaN/Infinity) raises
``ValueError`` naming the file and the line; with ``skip_bad_lines=True`` bad lines are skipped
instead, a :class:`BadLinesSkipped` warning gives the count, and the returned list carries the
details (:attr:`RecordList.skipped`) so the caller can print them. Blank lines are ignored.
Writes are atomic (:mod:`askd_ref.io`).
"""

import dataclasses
import json
import math
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Generic, Literal, TypeAlias, TypeVar

from askd_ref.io import atomic_open

__all__ = [
    "BadLine",
    "BadLinesSkipped",
    "Prompt",
    "RecordList",
    "Sample",
    "Source",
    "check_messages",
    "read_prompts",
    "read_samples",
    "write_samples",
]

Source: TypeAlias = Literal["teacher", "student"]


@dataclasses.dataclass(frozen=True)
class Sample:
    """One prompt–response pair (spec §8).

    >>> Sample(prompt="1+1=", response="2", source="teacher").is_tgo
    True
    """

    prompt: str
    """The prompt x, as text."""
    response: str
    """The response y, as text (without the prompt)."""
    source: Source
    """``"teacher"`` for a teacher-generated output (TGO), ``"student"`` for an SGO."""
    quality: float | None = None
    """Quality r ∈ [0, 1] if already scored (spec §5)."""
    reference: str | None = None
    """Reference answer for exact-match scoring (math tasks)."""
    tests: str | None = None
    """Unit-test source for pass-fraction scoring (code tasks)."""
    behaviour_logprob: float | None = None
    """log μ(y|x) summed over response tokens, under the policy that generated the sample."""
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Fields the schema does not know; preserved on write."""

    @property
    def is_tgo(self) -> bool:
        return self.source == "teacher"

    def to_record(self) -> dict[str, Any]:
        """The JSON object of this sample (spec §8): set fields, then ``extra``; ``None`` fields omitted.

        Raises ``ValueError``/``TypeError`` if the sample is not a valid record (the checks of
        :meth:`from_record`), or if ``extra`` reuses a schema field name.

        >>> Sample("1+1=", "2", "teacher", quality=1.0, extra={"id": 7}).to_record()
        {'prompt': '1+1=', 'response': '2', 'source': 'teacher', 'quality': 1.0, 'id': 7}
        """
        record: dict[str, Any] = {}
        for name in _SAMPLE_FIELDS:
            value = getattr(self, name)
            if value is not None:
                number = name in ("quality", "behaviour_logprob") and isinstance(value, int | float)
                record[name] = float(value) if number and not isinstance(value, bool) else value
        clash = sorted(set(self.extra) & set(_SAMPLE_FIELDS) | ({"extra"} & set(self.extra)))
        if clash:
            raise ValueError(f"Sample.extra must not reuse the schema field names {clash}")
        record.update(self.extra)
        Sample.from_record(record)  # same checks as reading
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "Sample":
        """Validate a decoded JSON object and build a :class:`Sample`; unknown keys go to ``extra``.

        Required: ``prompt`` and ``response`` (str), ``source`` ∈ {teacher, student}. Optional
        (absent or null): ``quality`` (number in [0, 1]), ``reference`` and ``tests`` (str),
        ``behaviour_logprob`` (finite number). Errors are ``ValueError`` naming the field.

        >>> Sample.from_record({"prompt": "p", "response": "r", "source": "student", "id": 3}).extra
        {'id': 3}
        >>> Sample.from_record({"prompt": "p", "response": "r", "source": "robot"})
        Traceback (most recent call last):
        ...
        ValueError: field 'source' must be 'teacher' or 'student', got 'robot'
        """
        if not isinstance(record, Mapping):
            raise ValueError(f"a sample record must be a JSON object, got {_json_kind(record)}")
        if "messages" in record and "prompt" not in record and "response" not in record:
            record = _from_messages(record)
        for name in ("prompt", "response", "source"):
            if name not in record:
                raise ValueError(f"missing required field {name!r}")
        prompt = _require_str(record, "prompt")
        response = _require_str(record, "response")
        source = record["source"]
        if source not in ("teacher", "student"):
            raise ValueError(f"field 'source' must be 'teacher' or 'student', got {source!r}")
        quality = _optional_number(record, "quality")
        if quality is not None and not 0.0 <= quality <= 1.0:
            raise ValueError(f"field 'quality' must be in [0, 1], got {quality!r}")
        extra = {k: v for k, v in record.items() if k not in _SAMPLE_FIELDS}
        if "extra" in extra:
            raise ValueError("field name 'extra' is reserved")
        return cls(
            prompt=prompt,
            response=response,
            source=source,
            quality=quality,
            reference=_optional_str(record, "reference"),
            tests=_optional_str(record, "tests"),
            behaviour_logprob=_optional_number(record, "behaviour_logprob"),
            extra=extra,
        )


def _from_messages(record: Mapping[str, Any]) -> dict[str, Any]:
    """A chat record as a prompt/response record (see the module docstring)."""
    messages = check_messages(record["messages"])
    if messages[-1]["role"] != "assistant":
        raise ValueError(
            "field 'messages' must end with the assistant response, "
            f"got a {messages[-1]['role']!r} message last"
        )
    if len(messages) < 2:
        raise ValueError("field 'messages' needs at least one message before the assistant response")
    out = dict(record)
    out["prompt"] = json.dumps(messages[:-1], ensure_ascii=False)
    out["response"] = messages[-1]["content"]
    out.setdefault("source", "teacher")
    return out


def check_messages(messages: object) -> list[dict[str, str]]:
    """``messages`` as a list of ``{"role": str, "content": str}``; ``ValueError`` naming what is wrong.

    >>> check_messages([{"role": "user", "content": "1+1="}])
    [{'role': 'user', 'content': '1+1='}]
    """
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"field 'messages' must be a non-empty list of messages, got {_json_kind(messages)}")
    out: list[dict[str, str]] = []
    for i, m in enumerate(messages):
        ok = isinstance(m, Mapping) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        if not ok:
            raise ValueError(
                f"messages[{i}] must be an object with string 'role' and 'content', got {m!r:.80}"
            )
        out.append({"role": m["role"], "content": m["content"]})
    return out


_SAMPLE_FIELDS: tuple[str, ...] = (
    "prompt",
    "response",
    "source",
    "quality",
    "reference",
    "tests",
    "behaviour_logprob",
)
_PROMPT_FIELDS: tuple[str, ...] = ("prompt", "reference", "tests")


def _json_kind(value: object) -> str:
    kinds = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def _require_str(record: Mapping[str, Any], name: str) -> str:
    value = record[name]
    if not isinstance(value, str):
        raise ValueError(f"field {name!r} must be a string, got {_json_kind(value)}")
    return value


def _optional_str(record: Mapping[str, Any], name: str) -> str | None:
    return None if record.get(name) is None else _require_str(record, name)


def _optional_number(record: Mapping[str, Any], name: str) -> float | None:
    value = record.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"field {name!r} must be a number or null, got {_json_kind(value)}")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"field {name!r} must be finite, got {out!r}")
    return out


@dataclasses.dataclass(frozen=True)
class Prompt:
    """One line of a prompt file (input of ``askd generate``): ``prompt``, optional ``reference``/``tests``.

    >>> Prompt("2+2=", reference="4").to_sample("4", "teacher").reference
    '4'
    """

    prompt: str
    """The prompt x, as text."""
    reference: str | None = None
    """Reference answer, copied to the generated samples (exact-match scoring)."""
    tests: str | None = None
    """Unit-test source, copied to the generated samples (pass-fraction scoring)."""
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Other fields of the line (e.g. an id); copied to the generated samples."""

    def to_sample(
        self,
        response: str,
        source: Source,
        *,
        behaviour_logprob: float | None = None,
        quality: float | None = None,
    ) -> Sample:
        """A :class:`Sample` answering this prompt, carrying its reference, tests and extra fields."""
        return Sample(
            prompt=self.prompt,
            response=response,
            source=source,
            quality=quality,
            reference=self.reference,
            tests=self.tests,
            behaviour_logprob=behaviour_logprob,
            extra=dict(self.extra),
        )

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "Prompt":
        """Validate a decoded JSON object (``prompt`` str required; ``reference``/``tests`` str or null)."""
        if not isinstance(record, Mapping):
            raise ValueError(f"a prompt record must be a JSON object, got {_json_kind(record)}")
        if "prompt" not in record:
            raise ValueError("missing required field 'prompt'")
        extra = {k: v for k, v in record.items() if k not in _PROMPT_FIELDS}
        for name in ("response", "source"):
            extra.pop(name, None)  # a sample file used as a prompt file: keep only the prompt side
        return cls(
            prompt=_require_str(record, "prompt"),
            reference=_optional_str(record, "reference"),
            tests=_optional_str(record, "tests"),
            extra=extra,
        )


@dataclasses.dataclass(frozen=True)
class BadLine:
    """A line :func:`read_samples`/:func:`read_prompts` could not use."""

    path: str
    line: int
    """1-based line number."""
    reason: str

    def __str__(self) -> str:
        return f"{self.path}, line {self.line}: {self.reason}"


class BadLinesSkipped(UserWarning):
    """Warned when ``skip_bad_lines=True`` skipped at least one line; the message gives the count."""


T = TypeVar("T")


class RecordList(list[T], Generic[T]):
    """A ``list`` of the records read, plus :attr:`skipped`: the bad lines left out (empty unless
    ``skip_bad_lines=True``)."""

    skipped: list[BadLine]

    def __init__(self, items: Iterable[T] = (), skipped: Iterable[BadLine] = ()) -> None:
        super().__init__(items)
        self.skipped = list(skipped)

    @property
    def num_skipped(self) -> int:
        """How many lines were skipped."""
        return len(self.skipped)

    def skipped_report(self) -> str:
        """One printable line: how many lines were skipped and the first reason (``""`` if none)."""
        if not self.skipped:
            return ""
        return f"skipped {len(self.skipped)} bad line(s); first: {self.skipped[0]}"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _iter_json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, decoded value) per non-blank line; a line that fails raises ``_LineError``."""
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                yield lineno, _LineError(f"not valid UTF-8 ({err.reason} at byte {err.start})")
                continue
            if not text.strip():
                continue
            try:
                yield lineno, json.loads(text, parse_constant=_reject_constant)
            except ValueError as err:  # json.JSONDecodeError is a ValueError
                truncated = "" if raw.endswith(b"\n") else " (last line has no newline: truncated?)"
                yield lineno, _LineError(f"corrupt or truncated JSON: {err}{truncated}")


class _LineError:
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _read_records(
    path: str | os.PathLike[str], parse: Any, *, skip_bad_lines: bool, what: str
) -> RecordList[Any]:
    file = Path(path)
    items: list[Any] = []
    skipped: list[BadLine] = []
    for lineno, value in _iter_json_lines(file):
        try:
            if isinstance(value, _LineError):
                raise ValueError(value.reason)
            items.append(parse(value))
        except ValueError as err:
            bad = BadLine(str(file), lineno, str(err))
            if not skip_bad_lines:
                raise ValueError(f"{bad} (pass skip_bad_lines=True to skip bad lines)") from None
            skipped.append(bad)
    out: RecordList[Any] = RecordList(items, skipped)
    if skipped:
        warnings.warn(
            f"{file}: {out.skipped_report()}; read {len(items)} {what}",
            BadLinesSkipped,
            stacklevel=3,
        )
    return out


def read_samples(path: str | os.PathLike[str], *, skip_bad_lines: bool = False) -> RecordList[Sample]:
    """Read a JSONL file of spec §8 sample records.

    A bad line raises ``ValueError`` naming the file and line (``"data.jsonl, line 3: missing
    required field 'source'"``). With ``skip_bad_lines=True`` bad lines are left out: a
    :class:`BadLinesSkipped` warning gives the count, and the result's ``.skipped`` lists each one
    (``.skipped_report()`` is a line to print). Blank lines are ignored.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "s.jsonl"
    >>> _ = p.write_text('{"prompt": "p", "response": "r", "source": "teacher", "quality": 0.5}\\n')
    >>> read_samples(p)[0].quality
    0.5
    """
    return _read_records(path, Sample.from_record, skip_bad_lines=skip_bad_lines, what="samples")


def read_prompts(path: str | os.PathLike[str], *, skip_bad_lines: bool = False) -> RecordList[Prompt]:
    """Read a JSONL prompt file: ``prompt`` (required), optional ``reference``/``tests``; other
    fields are kept in ``extra``. Errors and ``skip_bad_lines`` behave as in :func:`read_samples`.
    A sample file is also a valid prompt file (its ``response``/``source`` are dropped).
    """
    return _read_records(path, Prompt.from_record, skip_bad_lines=skip_bad_lines, what="prompts")


def write_samples(path: str | os.PathLike[str], samples: Iterable[Sample]) -> int:
    """Write ``samples`` as JSONL (one record per line, UTF-8) atomically; return how many.

    Each sample is checked as on reading (an invalid one raises ``ValueError`` naming its index,
    and the file is left as it was). ``read_samples(write_samples(p, s))`` round-trips, ``extra``
    included.
    """
    count = 0
    with atomic_open(path, "w") as handle:
        for i, sample in enumerate(samples):
            if not isinstance(sample, Sample):
                raise TypeError(f"samples[{i}] must be a Sample, got {type(sample).__name__}")
            try:
                record = sample.to_record()
                line = json.dumps(record, ensure_ascii=False, allow_nan=False)
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"cannot write samples[{i}] (prompt {sample.prompt[:40]!r}): {err}"
                ) from None
            handle.write(line + "\n")
            count += 1
    return count
