"""``python -m proofs [--output PATH] [--check]``: regenerate ``docs/derivations.md``.

``--check`` writes nothing and exits 1 when the file on disk differs from the generated text.
"""

import argparse
import sys
from pathlib import Path

from askd_ref.io import atomic_write_text
from proofs import all_derivations
from proofs.render import render_markdown

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "derivations.md"


def generate() -> str:
    """The text of ``docs/derivations.md``."""
    return render_markdown(all_derivations())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m proofs", description=__doc__)
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="where to write (default: %(default)s)"
    )
    parser.add_argument("--check", action="store_true", help="only compare with the file on disk")
    args = parser.parse_args(argv)
    text = generate()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else None
        if current != text:
            print(f"{args.output} is stale; run `python -m proofs`", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    atomic_write_text(args.output, text)
    print(f"wrote {args.output} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
