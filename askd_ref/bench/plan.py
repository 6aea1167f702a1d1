"""Validation of a benchmark script's plan without running it (``scripts/gpu-check.sh --plan``).

A plan is a list of steps ``{"name": ..., "argv": [...]}``. :func:`validate` checks that every
``python -m askd_ref.cli ...`` command parses with the real ``askd`` argument parser and that
every pytest target (``path`` or ``path::test_name``) exists, so a GPU session does not spend
its minutes on a typo. ``python -m askd_ref.bench.plan PLAN.json`` prints the problems and
exits 1 if there are any.
"""

import contextlib
import io
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["validate"]


def _check_cli(argv: Sequence[str]) -> str | None:
    """The ``askd`` parser's error message for ``argv``, or None when it parses."""
    from askd_ref.cli import build_parser

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            build_parser().parse_args(list(argv))
    except SystemExit:
        lines = err.getvalue().strip().splitlines()
        return lines[-1] if lines else "argument parsing exited"
    return None


def _check_pytest(argv: Sequence[str], root: Path) -> list[str]:
    problems = []
    for arg in argv:
        if arg.startswith("-") or (not arg.startswith("tests/") and not arg.startswith("checks/")):
            continue
        path, _, name = arg.partition("::")
        file = root / path
        if not file.is_file():
            problems.append(f"pytest target {path} does not exist")
        elif name and not re.search(rf"^def {re.escape(name)}\(", file.read_text(encoding="utf-8"), re.M):
            problems.append(f"pytest target {arg}: no test function {name!r} in {path}")
    return problems


def validate(plan: Sequence[dict[str, Any]], root: Path = Path()) -> list[str]:
    """Problems of ``plan`` (empty when every command would start with valid arguments)."""
    problems: list[str] = []
    for step in plan:
        argv = [str(a) for a in step["argv"]]
        name = step.get("name", "?")
        if "-m" in argv:
            module = argv[argv.index("-m") + 1] if argv.index("-m") + 1 < len(argv) else ""
            rest = argv[argv.index("-m") + 2 :]
            if module == "askd_ref.cli":
                error = _check_cli(rest)
                if error:
                    problems.append(f"{name}: askd {' '.join(rest)}: {error}")
            elif module == "pytest":
                problems.extend(f"{name}: {p}" for p in _check_pytest(rest, root))
    return problems


def _main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m askd_ref.bench.plan PLAN.json", file=sys.stderr)
        return 2
    plan = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    problems = validate(plan)
    for p in problems:
        print(f"plan: {p}", file=sys.stderr)
    print(f"plan: {len(plan)} steps, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
