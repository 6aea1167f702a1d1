r"""Exact-match answer checking for math tasks (spec §5): r = 1 if the final answer is right, else 0.

Extraction (:func:`extract_answer`), in order of precedence — the first rule that applies wins:

1. the content of the **last** ``\boxed{...}`` (or ``\fbox{...}``), nested braces allowed;
2. the text after the **last** ``####`` marker, up to the end of that line (GSM8K style);
3. the **last number** anywhere in the text (integers, ``1,234`` thousands groups, decimals
   ``3.5`` / ``.5``, a sign ``-5`` / ``−5`` when not preceded by a word character, fractions ``3/4``).

A ``\boxed{}`` or ``####`` with empty content counts as absent and the next rule is tried.

Comparison (:func:`answers_match`): both sides go through :func:`parse_number`. If both parse,
they are compared **exactly** as rational numbers (``0.5 == 1/2 == .50``, ``1,000 == 1000``,
``-3 == −3``); if either side does not parse, the two normalised strings are compared
(whitespace collapsed, trailing period dropped, case-folded).

What :func:`parse_number` normalises: surrounding whitespace and ``$`` signs; a leading ``+``;
the Unicode minus ``−``; thousands commas in groups of three (``12,345``; ``1,2`` is *not* a
number); a trailing period; trailing unit words or symbols (``72 dollars``, ``5 cm``, ``50%``,
``30°``); LaTeX ``\frac{a}{b}`` / ``\dfrac`` / ``\tfrac``, ``\text{..}`` / ``\mathrm{..}``, ``\,``
spacing, ``{,}`` separators, ``\%``, ``^\circ``; scientific notation ``1e3``.

What it does **not** normalise: number words (``five``), expressions (``2+3``), mixed numbers
(``1 1/2``), leading words (``about 72``), unit conversion (``1 km`` ≠ ``1000 m``), and
percent-to-fraction (``50%`` equals ``50``, not ``0.5``: ``%`` is treated as a unit). There is no
rounding tolerance: ``3.33`` ≠ ``10/3``.
"""

import re
from collections.abc import Sequence
from fractions import Fraction

from askd_ref.engine.data import Sample
from askd_ref.quality import validate_scores

__all__ = ["ExactMatch", "answers_match", "extract_answer", "parse_number"]

_SIGN = r"(?:(?<![\w)\]])[-−+])?"
_CORE = r"(?<![\d.])(?:(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+)"
_NUMBER_RE = re.compile(_SIGN + _CORE + r"(?:\s*/\s*\d+(?!\.\d))?")

_FULL_NUMBER_RE = re.compile(
    r"^(?P<num>[-+]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)"
    r"(?:\s*/\s*(?P<den>[-+]?\d+))?"
    r"\s*(?P<unit>[^\d\s.,/][^\d]*)?$"
)
_UNIT_RE = re.compile(r"^[A-Za-z%°][A-Za-z%°\s./]*$")


def _braced(text: str, start: int) -> tuple[str, int] | None:
    """Content of the balanced ``{...}`` opening at ``text[start]``, and the index after it."""
    if start >= len(text) or text[start] != "{":
        return None
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
    return None


def _last_boxed(text: str) -> str | None:
    best: tuple[int, str] | None = None
    for match in re.finditer(r"\\(?:boxed|fbox)\s*", text):
        got = _braced(text, match.end())
        if got is not None and got[0].strip() and (best is None or match.start() > best[0]):
            best = (match.start(), got[0].strip())
    return None if best is None else best[1]


def _last_hashes(text: str) -> str | None:
    idx = text.rfind("####")
    while idx != -1:
        content = text[idx + 4 :].split("\n", 1)[0].strip()
        if content:
            return content
        idx = text.rfind("####", 0, idx)
    return None


def extract_answer(text: str) -> str | None:
    r"""The final answer in ``text`` (boxed > ``####`` > last number), or ``None`` if there is none.

    >>> extract_answer(r"so x = 3 and the answer is \boxed{\frac{3}{4}}. Check: 7")
    '\\frac{3}{4}'
    >>> extract_answer("48 + 24 = 72\n#### 72")
    '72'
    >>> extract_answer("She pays 1,250 dollars, then -3.5 back.")
    '-3.5'
    >>> extract_answer("no digits here") is None
    True
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    boxed = _last_boxed(text)
    if boxed is not None:
        return boxed
    hashes = _last_hashes(text)
    if hashes is not None:
        return hashes
    numbers = _NUMBER_RE.findall(text)
    return numbers[-1].strip() if numbers else None


def _strip_latex(s: str) -> str:
    for cmd in ("frac", "dfrac", "tfrac"):
        while True:
            m = re.search(r"\\" + cmd + r"\s*(?=\{)", s)
            if m is None:
                break
            num = _braced(s, m.end())
            den = None if num is None else _braced(s, num[1])
            if num is None or den is None:
                break
            s = s[: m.start()] + f"({num[0]})/({den[0]})" + s[den[1] :]
    s = re.sub(r"\\(?:text|mathrm|textbf|mathbf|operatorname)\s*\{([^{}]*)\}", r" \1", s)
    s = s.replace("{,}", ",").replace("\\%", "%").replace("\\$", "$")
    s = re.sub(r"\^\s*\{?\\circ\}?", "°", s)
    s = re.sub(r"\\[,;:! ]", "", s)
    s = s.replace("\\left", "").replace("\\right", "")
    return s


def parse_number(text: str) -> Fraction | None:
    r"""``text`` as an exact rational number, or ``None`` if it is not a number (see module doc).

    >>> parse_number("1,234.50 dollars.")
    Fraction(2469, 2)
    >>> parse_number(r"-\frac{3}{4}") == parse_number("−0.75")
    True
    >>> parse_number("1,2") is None
    True
    """
    s = _strip_latex(text).strip().replace("−", "-").replace("$", "").strip()
    s = re.sub(r"\(\s*([-+]?[\d.,]+)\s*\)", r"\1", s)  # (3)/(4) from \frac
    s = s.rstrip(".").strip()
    m = _FULL_NUMBER_RE.match(s)
    if m is None:
        return None
    unit = m.group("unit")
    if unit is not None and not _UNIT_RE.match(unit.strip()):
        return None
    num_text = m.group("num").replace(",", "")
    if num_text.endswith("."):
        num_text = num_text[:-1]
    try:
        value = Fraction(num_text)
        den = m.group("den")
        if den is not None:
            d = int(den)
            if d == 0:
                return None
            value /= d
    except (ValueError, ZeroDivisionError):
        return None
    return value


def _normalise_text(s: str) -> str:
    return " ".join(s.split()).rstrip(".").strip().casefold()


def answers_match(predicted: str | None, reference: str) -> bool:
    """Whether ``predicted`` equals ``reference``: exact rational comparison, else normalised text.

    >>> answers_match("0.5", "1/2"), answers_match("1,000", "1000"), answers_match("3.33", "10/3")
    (True, True, False)
    >>> answers_match(None, "4")
    False
    """
    if predicted is None:
        return False
    a, b = parse_number(predicted), parse_number(reference)
    if a is not None and b is not None:
        return a == b
    return _normalise_text(_strip_latex(predicted)) == _normalise_text(_strip_latex(reference))


def reference_answer(reference: str) -> str:
    """The answer inside a reference: itself if it is a number, else :func:`extract_answer` of it.

    A GSM8K solution (``"... #### 72"``) yields ``"72"``; a bare ``"72"`` or a non-numeric answer
    (``"yes"``) is returned unchanged.

    >>> reference_answer("Natalia sold 48/2 = 24 clips in May.\\n#### 72")
    '72'
    """
    if parse_number(reference) is not None:
        return reference
    found = extract_answer(reference)
    return reference if found is None else found


class ExactMatch:
    """Quality r = 1.0 if the response's final answer equals ``Sample.reference``, else 0.0.

    The response's answer is :func:`extract_answer` of the response; the reference's is
    :func:`reference_answer` (so GSM8K solutions with ``#### n`` work as references). A sample
    without a reference is a ``ValueError`` naming it.

    >>> s = [Sample("2+2=", "2+2 is #### 4", "teacher", reference="4"),
    ...      Sample("2+3=", "it is 6", "student", reference="5")]
    >>> ExactMatch().score(s)
    [1.0, 0.0]
    """

    name: str = "exact_match"

    def score(self, samples: Sequence[Sample]) -> list[float]:
        out: list[float] = []
        for i, sample in enumerate(samples):
            if sample.reference is None:
                raise ValueError(
                    f"quality signal {self.name!r}: sample {i} (prompt {sample.prompt[:40]!r}) has no "
                    "reference answer; exact match needs Sample.reference"
                )
            ok = answers_match(extract_answer(sample.response), reference_answer(sample.reference))
            out.append(1.0 if ok else 0.0)
        return validate_scores(self.name, samples, out)
