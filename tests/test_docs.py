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
