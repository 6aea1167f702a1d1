"""The checks report generator runs (in CI) and the committed report is current.

Rounding-level numbers (errors ≈ 1e-16) may differ between machines, so the committed
``docs/checks-report.md`` is compared with a freshly generated one after masking numbers: the
text, the theorems, the checks listed and the table shapes must match exactly.
"""

import difflib
from pathlib import Path

from checks.report import LABELS, ROOT, check_names, main, mask_numbers

FIGURES = (
    "checks-coefficients.png",
    "checks-convergence.png",
    "checks-estimator-bias.png",
    "checks-lipschitz.png",
)


def test_every_theorem_has_a_check_naming_it() -> None:
    names = check_names()
    missing = [label for label in LABELS if not names[label]]
    assert not missing, f"no test_t<k>_… check for {missing}"


def test_checks_report_generates_and_matches_the_committed_one(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path)]) == 0
    text = (tmp_path / "checks-report.md").read_text(encoding="utf-8")
    for label in LABELS:
        assert f"| {label} |" in text
    for name in FIGURES:
        data = (tmp_path / "figures" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", name
        assert len(data) > 10_000, f"{name} is suspiciously small ({len(data)} bytes)"
    committed = (ROOT / "docs" / "checks-report.md").read_text(encoding="utf-8")
    if mask_numbers(committed) != mask_numbers(text):
        diff = "\n".join(
            list(
                difflib.unified_diff(
                    mask_numbers(committed).splitlines(), mask_numbers(text).splitlines(), lineterm="", n=0
                )
            )[:20]
        )
        raise AssertionError(f"docs/checks-report.md is stale; run `python -m checks.report`.\n{diff}")
