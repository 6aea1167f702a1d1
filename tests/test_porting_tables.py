"""docs/porting.md's generated tables match the code, and its diagnostics table the vectors."""

import re
from pathlib import Path

import pytest

from askd_ref import porting_tables as pt
from askd_ref.porting import conformance as cf

DOC = Path(__file__).resolve().parents[1] / "docs" / "porting.md"


def test_generated_tables_are_up_to_date() -> None:
    assert pt.update(DOC, write=False), (
        "docs/porting.md's generated tables differ from the code; "
        "run `python -m askd_ref.porting_tables --write`"
    )
    assert pt.main(["--check"]) == 0


def test_a_drifted_table_is_detected(tmp_path: Path) -> None:
    stale = tmp_path / "porting.md"
    stale.write_text(DOC.read_text(encoding="utf-8").replace("`delta`, `alpha`", "`alpha`, `delta`", 1))
    assert not pt.update(stale, write=False)
    assert pt.update(stale, write=True) is False
    assert pt.update(stale, write=False)
    with pytest.raises(ValueError, match="BEGIN GENERATED: options"):
        pt.render("<!-- BEGIN GENERATED: signatures -->\n<!-- END GENERATED: signatures -->")


def test_every_option_field_and_function_is_in_the_tables() -> None:
    text = DOC.read_text(encoding="utf-8")
    import dataclasses

    import askd_ref

    for f in dataclasses.fields(askd_ref.ASKDOptions):
        assert f"| `{f.name}` |" in text, f.name
    for name, info in cf.FUNCTIONS.items():
        if info.kind != "options":
            assert f"| `{name}` | {info.label} |" in text, name


def test_diagnostics_table_names_every_key_the_vectors_hold() -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("### 0.2") : text.index("## 1.")]
    documented = set(re.findall(r"`([a-z_0-9]+/[a-z_0-9]+)`", section))
    vectors = cf.load_vectors()
    keys = {
        k for c in vectors["cases"] if "diagnostics" in c["expected"] for k in c["expected"]["diagnostics"]
    }
    assert keys, "no diagnostics in the vectors"
    assert keys <= documented, f"diagnostics missing from docs/porting.md §0.2: {sorted(keys - documented)}"
