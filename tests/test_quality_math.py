"""Exact-match signal (spec §5): extraction precedence, numeric normalisation, errors."""

from fractions import Fraction

import pytest

from askd_ref.engine.data import Sample
from askd_ref.quality import QualitySignal, get_signal
from askd_ref.quality.math import ExactMatch, answers_match, extract_answer, parse_number, reference_answer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is 42.", "42"),
        ("x = 10-3 = 7", "7"),
        ("the numbers 1, 2, 3", "3"),
        ("costs $1,234,567 in total", "1,234,567"),
        ("take .5 of it", ".5"),
        ("use 3/4 cup", "3/4"),
        ("it drops to -12 degrees", "-12"),
        ("it drops to −12 degrees", "−12"),
        ("pi is about 3.14159", "3.14159"),
        ("version 1.2.3", "1.2"),
        ("5-3", "3"),  # a minus after a digit is subtraction, not a sign
        ("first 10 then 20\n#### 15", "15"),  # #### beats the last number
        (r"#### 15 but \boxed{16} and 17", "16"),  # boxed beats ####
        (r"\boxed{1} then \boxed{2}", "2"),  # the last boxed
        (r"\boxed{\frac{3}{4}}", r"\frac{3}{4}"),  # nested braces
        (r"\boxed{} and 9", "9"),  # empty boxed is absent
        ("####\nthe 9", "9"),  # empty #### is absent
        ("#### 1\n#### 2", "2"),
        ("no digits at all", None),
        ("", None),
    ],
)
def test_extract_answer(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("42", Fraction(42)),
        ("-42", Fraction(-42)),
        ("+42", Fraction(42)),
        ("−42", Fraction(-42)),
        ("1,234", Fraction(1234)),
        ("1,234,567.5", Fraction(2469135, 2)),
        ("0.50", Fraction(1, 2)),
        (".5", Fraction(1, 2)),
        ("5.", Fraction(5)),
        ("3/4", Fraction(3, 4)),
        ("-3 / 4", Fraction(-3, 4)),
        (r"\frac{3}{4}", Fraction(3, 4)),
        (r"-\dfrac{6}{8}", Fraction(-3, 4)),
        ("$18", Fraction(18)),
        ("\\$18", Fraction(18)),
        ("72 dollars.", Fraction(72)),
        (r"5 \text{ apples}", Fraction(5)),
        ("50%", Fraction(50)),
        (r"50\%", Fraction(50)),
        (r"30^\circ", Fraction(30)),
        ("1{,}000", Fraction(1000)),
        ("1e3", Fraction(1000)),
        ("  7  ", Fraction(7)),
    ],
)
def test_parse_number_normalises(text: str, value: Fraction) -> None:
    assert parse_number(text) == value


@pytest.mark.parametrize("text", ["five", "2+3", "1 1/2", "about 72", "1,2", "3/0", "", "x", "12,34"])
def test_parse_number_rejects(text: str) -> None:
    assert parse_number(text) is None


@pytest.mark.parametrize(
    ("predicted", "reference", "match"),
    [
        ("0.5", "1/2", True),
        ("1,000", "1000", True),
        ("-0", "0", True),
        ("72", "72.0", True),
        ("3.33", "10/3", False),  # no rounding tolerance
        ("50%", "0.5", False),  # % is a unit, not /100
        ("1 km", "1000 m", False),
        ("Yes", "yes.", True),  # non-numeric: normalised text
        ("yes", "no", False),
        ("7", "seven", False),
        (None, "7", False),
    ],
)
def test_answers_match(predicted: str | None, reference: str, match: bool) -> None:
    assert answers_match(predicted, reference) is match


def test_reference_answer_accepts_gsm8k_solutions() -> None:
    assert reference_answer("48/2 = 24 clips in May.\n48+24 = 72\n#### 72") == "72"
    assert reference_answer("3/4") == "3/4"
    assert reference_answer("yes") == "yes"


def test_exact_match_scores() -> None:
    samples = [
        Sample("q0", "so 12*3 = 36\n#### 36", "teacher", reference="36"),
        Sample("q1", r"\boxed{0.75}", "student", reference="3/4"),
        Sample("q2", "I think 41", "student", reference="42"),
        Sample("q3", "no answer", "student", reference="1"),
        Sample("q4", "a total of 1,500 dollars.", "teacher", reference="Solution ... #### 1500"),
        Sample("q5", "-8", "student", reference="8"),
    ]
    signal = ExactMatch()
    assert isinstance(signal, QualitySignal)
    assert signal.score(samples) == [1.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    assert signal.score([]) == []


def test_exact_match_without_reference_names_the_sample() -> None:
    samples = [Sample("q0", "1", "teacher", reference="1"), Sample("what is 2+2", "4", "student")]
    with pytest.raises(ValueError, match=r"sample 1 \(prompt 'what is 2\+2'\) has no reference"):
        ExactMatch().score(samples)


def test_extract_answer_rejects_non_text() -> None:
    with pytest.raises(TypeError, match="text must be a str"):
        extract_answer(42)  # type: ignore[arg-type]


def test_registry() -> None:
    assert isinstance(get_signal("exact_match"), ExactMatch)
    assert isinstance(get_signal("math"), ExactMatch)
    with pytest.raises(ValueError, match="unknown quality signal 'nope'"):
        get_signal("nope")


def test_stdlib_math_still_works_in_validate_scores() -> None:
    # importing askd_ref.quality.math rebinds the package attribute `math`; validate_scores must not care
    import askd_ref.quality as q

    assert q.validate_scores("x", [Sample("p", "r", "student")], [0.25]) == [0.25]
    with pytest.raises(ValueError, match="nan"):
        q.validate_scores("x", [Sample("p", "r", "student")], [float("nan")])
