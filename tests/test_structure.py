"""Structural rules of the package, checked on its source (AST), so that they stay true.

* No function in ``askd_ref`` is longer than :data:`MAX_FUNCTION_LINES` lines of code
  (docstring, blank and comment-only lines not counted), except the ones listed in
  :data:`LONG_FUNCTIONS`.
* No module imports another module's private name (``from askd_ref.x import _name``): names
  shared between modules are public, in a shared module such as ``askd_ref/_reduce.py``.
* No method name is dispatched outside the method registry ``askd_ref/methods.py``: comparing
  a ``method`` with a method's name (``method == "seqkd"``, ``method in ("askd", ...)``) belongs
  there.
"""

import ast
import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "askd_ref"
MAX_FUNCTION_LINES = 80

#: Functions allowed to exceed the limit, by "module:qualified name", with the reason.
LONG_FUNCTIONS: dict[str, str] = {
    # Data tables: the golden-vector cases, one CaseSpec per entry.
    "porting/vectors.py:_divergence_cases": "data table",
    "porting/vectors.py:_coefficient_cases": "data table",
    "porting/vectors.py:_sgo_cases": "data table",
    "porting/vectors.py:_askd_cases": "data table",
    "porting/vectors.py:_v2_cases": "data table",
}


def _modules() -> Iterator[tuple[str, ast.Module, str]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        yield path.relative_to(PACKAGE).as_posix(), ast.parse(source), source


Function = ast.FunctionDef | ast.AsyncFunctionDef


def _functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, Function]]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield prefix + node.name, node
            yield from _functions(node, prefix + node.name + ".")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, prefix + node.name + ".")


_NOT_CODE = (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)


def _code_lines(source: str) -> set[int]:
    """Line numbers holding code: not blank, not only a comment, not part of a docstring."""
    lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in _NOT_CODE:
            continue
        lines.update(range(tok.start[0], tok.end[0] + 1))
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            first = body[0] if body else None
            value = first.value if isinstance(first, ast.Expr) else None
            if first is not None and isinstance(value, ast.Constant) and isinstance(value.value, str):
                lines.difference_update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return lines


def function_lengths() -> dict[str, int]:
    """Lines of code of every function in askd_ref, by "module:qualified name"."""
    out: dict[str, int] = {}
    for module, tree, source in _modules():
        code = _code_lines(source)
        for name, fn in _functions(tree):
            start = min([fn.lineno, *(d.lineno for d in fn.decorator_list)])
            span = range(start, (fn.end_lineno or fn.lineno) + 1)
            out[f"{module}:{name}"] = sum(1 for line in span if line in code)
    return out


def test_no_function_is_longer_than_the_limit() -> None:
    long = {name: n for name, n in function_lengths().items() if n > MAX_FUNCTION_LINES}
    unexpected = {name: n for name, n in long.items() if name not in LONG_FUNCTIONS}
    assert not unexpected, f"functions over {MAX_FUNCTION_LINES} lines of code: {unexpected}"


def test_the_exemptions_are_still_needed() -> None:
    lengths = function_lengths()
    stale = [name for name in LONG_FUNCTIONS if lengths.get(name, 0) <= MAX_FUNCTION_LINES]
    assert not stale, f"no longer over the limit (remove from LONG_FUNCTIONS): {stale}"


def test_the_line_count_skips_docstrings_comments_and_blank_lines() -> None:
    source = (
        'def f():\n    """Doc\n\n    string."""\n    # comment\n\n'
        "    x = 1\n    return (\n        x\n    )\n"
    )
    tree = ast.parse(source)
    code = _code_lines(source)
    fn = tree.body[0]
    assert isinstance(fn, ast.FunctionDef)
    assert sum(1 for line in range(fn.lineno, (fn.end_lineno or 0) + 1) if line in code) == 5


def test_no_module_imports_another_modules_private_name() -> None:
    found = []
    for module, tree, _ in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("askd_ref"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                found += [f"{module}:{node.lineno} {node.module}.{name}" for name in private]
    assert not found, found


def _method_names() -> set[str]:
    from askd_ref.methods import METHODS

    return set(METHODS)


def test_no_method_name_is_dispatched_outside_the_registry() -> None:
    names = _method_names()
    found = []
    for module, tree, _ in _modules():
        if module == "methods.py":
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Compare):
                continue
            operands = [node.left, *node.comparators]
            if not any(isinstance(o, ast.Name | ast.Attribute) and _is_method(o) for o in operands):
                continue
            for o in operands:
                consts = o.elts if isinstance(o, ast.Tuple | ast.List | ast.Set) else [o]
                for c in consts:
                    if isinstance(c, ast.Constant) and c.value in names:
                        found.append(f"{module}:{node.lineno} {c.value!r}")
    assert not found, found


def _is_method(node: ast.expr) -> bool:
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return name == "method"


def _readme_layout() -> str:
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Layout\n", 1)[1]
    return section.split("```\n", 2)[1]


def test_readme_layout_matches_the_package_tree() -> None:
    """Every subpackage and module of askd_ref is named in the README's layout, and every
    subpackage the layout names exists (subcommand modules of ``cli/commands`` excepted: the
    README lists the subcommands themselves)."""
    layout = _readme_layout()
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", layout))
    named_dirs = set(re.findall(r"^  ([a-z_]+)/", layout, flags=re.M))
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert named_dirs == packages, f"layout names {sorted(named_dirs)}, askd_ref has {sorted(packages)}"
    missing = [
        path.relative_to(PACKAGE).as_posix()
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.stem not in ("__init__", "__main__")
        and path.parent.name != "commands"
        and path.stem not in words
    ]
    assert not missing, f"modules not in the README layout: {missing}"
