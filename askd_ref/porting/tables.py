"""The generated tables of ``docs/porting.md``: §10 signatures and the ``ASKDOptions`` fields.

Both tables are read from the code (``inspect.signature`` of the public functions, the
dataclass fields of :class:`~askd_ref.ASKDOptions` and their attribute docstrings), so the
guide cannot drift from the library without ``tests/test_porting_tables.py`` failing::

    python -m askd_ref.porting_tables --check    # exit 1 if docs/porting.md is stale
    python -m askd_ref.porting_tables --write    # rewrite the generated blocks

Example:
    >>> "| `tgo_coefficient` | E5 | `delta`, `alpha` |" in signature_table()
    True
"""

import argparse
import ast
import dataclasses
import inspect
import itertools
import sys
import typing
from collections.abc import Sequence
from pathlib import Path

import askd_ref
from askd_ref import options as options_module
from askd_ref.porting.conformance import FUNCTIONS

__all__ = ["BLOCKS", "options_table", "render", "signature_table", "update"]

DOC = Path(__file__).resolve().parents[2] / "docs" / "porting.md"


def _default(value: object) -> str:
    return "required" if value is inspect.Parameter.empty else repr(value)


def _returns(name: str, fn: object) -> str:
    ann = inspect.signature(fn).return_annotation  # type: ignore[arg-type]
    text = ann if isinstance(ann, str) else getattr(ann, "__name__", str(ann))
    if "LossOutput" in text:
        return "`LossOutput`"
    dims = getattr(ann, "dim_str", "")
    if FUNCTIONS[name].grad_args == ("student_logits",):  # E1–E4 reduce the vocabulary axis
        return "tensor, the input shape without its last axis"
    return f"tensor `({dims})`" if dims and not dims.startswith("*") else "tensor, the broadcast shape"


def signature_table() -> str:
    """One row per spec §10 function: positional and keyword-only parameters, return, gradients."""
    head = (
        "| function | spec | positional (in order) | keyword-only (default) | returns "
        "| gradients recorded for |"
    )
    rows = [head, "|---|---|---|---|---|---|"]
    for name, info in FUNCTIONS.items():
        if info.kind == "options":
            continue
        fn = getattr(askd_ref, name)
        params = inspect.signature(fn).parameters.values()
        positional = [
            f"`{p.name}`" + ("" if p.default is inspect.Parameter.empty else f" = {p.default!r}")
            for p in params
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        keyword = [f"`{p.name}` ({_default(p.default)})" for p in params if p.kind == p.KEYWORD_ONLY]
        grads = ", ".join(f"`{g}`" for g in info.grad_args) or "—"
        rows.append(
            f"| `{name}` | {info.label} | {', '.join(positional) or '—'} | {', '.join(keyword) or '—'} "
            f"| {_returns(name, fn)} | {grads} |"
        )
    return "\n".join(rows)


def _field_docs() -> dict[str, str]:
    """First sentence of each field's attribute docstring in ``askd_ref/options.py``."""
    tree = ast.parse(Path(options_module.__file__).read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ASKDOptions")
    out: dict[str, str] = {}
    body = cls.body
    for node, nxt in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            text = " ".join(nxt.value.value.split()).replace("``", "`")
            out[node.target.id] = text.replace("|", "\\|")
    return out


def options_table() -> str:
    """One row per ``ASKDOptions`` field, in declaration order: type, default, meaning."""
    docs = _field_docs()
    hints = typing.get_type_hints(askd_ref.ASKDOptions)
    rows = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(askd_ref.ASKDOptions):
        hint = hints[f.name]
        choices = typing.get_args(hint)
        kind = " \\| ".join(repr(c) for c in choices) if choices else getattr(hint, "__name__", str(hint))
        rows.append(f"| `{f.name}` | {kind} | `{f.default!r}` | {docs.get(f.name, '')} |")
    return "\n".join(rows)


#: Marker name → generator of the block between ``<!-- BEGIN GENERATED: name -->`` and END.
BLOCKS = {"signatures": signature_table, "options": options_table}


def render(text: str) -> str:
    """``text`` with every generated block replaced by its current content."""
    for name, make in BLOCKS.items():
        begin, end = f"<!-- BEGIN GENERATED: {name} -->", f"<!-- END GENERATED: {name} -->"
        if text.count(begin) != 1 or text.count(end) != 1:
            raise ValueError(f"docs/porting.md needs exactly one {begin} … {end} block")
        head, rest = text.split(begin)
        _, tail = rest.split(end)
        text = f"{head}{begin}\n{make()}\n{end}{tail}"
    return text


def update(path: Path = DOC, *, write: bool) -> bool:
    """Whether ``path`` is up to date; with ``write``, make it so."""
    text = path.read_text(encoding="utf-8")
    fresh = render(text)
    if write and fresh != text:
        path.write_text(fresh, encoding="utf-8")
    return fresh == text


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m askd_ref.porting_tables --check|--write``; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m askd_ref.porting_tables", description=__doc__.split("\n")[0]
    )
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--check", action="store_true", help="exit 1 if docs/porting.md is out of date")
    group.add_argument("--write", action="store_true", help="rewrite the generated blocks")
    args = parser.parse_args(argv)
    ok = update(write=args.write)
    if args.check and not ok:
        print("docs/porting.md is out of date: run `python -m askd_ref.porting_tables --write`")
        return 1
    print("docs/porting.md is up to date" if ok else "docs/porting.md: generated tables rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
