"""Documentation coverage: every public name is documented, and the README's commands are real."""

import re
from pathlib import Path

import askd_ref

ROOT = Path(__file__).resolve().parents[1]


def _docs_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").glob("*.md")))


def test_every_public_name_is_in_docs() -> None:
    text = _docs_text()
    missing = [name for name in askd_ref.__all__ if not re.search(rf"\b{re.escape(name)}\b", text)]
    assert not missing, f"public names missing from docs/: {missing}"


def test_every_public_name_has_a_docstring() -> None:
    undocumented = [
        name
        for name in askd_ref.__all__
        if callable(getattr(askd_ref, name)) and not (getattr(askd_ref, name).__doc__ or "").strip()
    ]
    assert not undocumented, f"public callables without a docstring: {undocumented}"


def test_readme_opens_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```(?:sh|bash|console)?\n(.*?)```", readme, flags=re.S)
    assert blocks, "README has no command block"
    commands = [line.split("#")[0].strip() for line in blocks[0].splitlines() if line.split("#")[0].strip()]
    assert commands == ["make demo", "make test"], commands


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^make test$", ci, flags=re.M), ci


def test_docs_state_the_provenance() -> None:
    for path in (ROOT / "README.md", ROOT / "docs" / "method.md"):
        text = path.read_text(encoding="utf-8")
        assert "not public" in text, path
        assert "reconstruction" in text, path


#: The stable names of spec §10 that are functions (ASKDOptions is a dataclass, documented per field).
SPEC_FUNCTIONS = [
    "forward_kl", "reverse_kl", "skew_forward_kl", "skew_reverse_kl", "generalized_jsd",
    "tgo_coefficient", "sgo_coefficient", "soft_gate", "hard_gate", "clipped_sgo_coefficient",
    "tgo_alpha", "sgo_alpha", "sequence_log_ratio", "tgo_loss", "sgo_loss", "askd_loss",
    "dense_askd_loss", "seqkd_loss", "kd_loss", "rkl_loss", "gkd_loss", "distillm_loss",
    "distillm2_loss", "advantage_kd_loss",
]  # fmt: skip


def test_spec_functions_follow_the_docstring_template() -> None:
    """Formula, spec label, value-vs-surrogate, shapes and a doctested example (issue 2.6)."""
    kind = re.compile(
        r"surrogate|divergence itself|true divergence|not a loss|coefficient, not|A value|loss value"
    )
    problems = {}
    for name in SPEC_FUNCTIONS:
        doc = getattr(askd_ref, name).__doc__ or ""
        missing = [
            part
            for part, ok in (
                ("example", ">>>" in doc),
                ("spec label", bool(re.search(r"\b[ET]\d+\b|§\d+", doc))),
                ("divergence or surrogate", bool(kind.search(doc))),
                ("shapes", bool(re.search(r"[Ss]hape|\(batch|\(\*batch", doc))),
            )
            if not ok
        ]
        if missing:
            problems[name] = missing
    assert not problems, problems
