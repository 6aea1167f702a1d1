"""``askd vectors``: write (or check) the golden vectors of every spec §10 function.

::

    askd vectors --out vectors/askd-v2.json               # regenerate the newest committed file
    askd vectors --out vectors/askd-v1.json --version 1   # the version-1 file, kept for old readers
    askd vectors --check vectors/askd-v2.json             # regenerate in memory and compare (1e-12)

``--check`` regenerates the schema version the checked file declares; ``--out`` writes the
newest unless ``--version`` says otherwise.

The file format and versioning policy are in ``vectors/SCHEMA.md``; ports check themselves
against the file with ``python -m askd_ref.conformance --impl MODULE``.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``vectors`` subcommand."""
    parser = subparsers.add_parser(
        "vectors",
        help="write the float64 golden vectors (values, gradients, diagnostics) of the spec §10 functions",
        description=(
            "Write, or check, the float64 golden vectors (values, gradients, diagnostics) of every function\n"
            "of the specification's section 10, against which ports of ASKD check themselves.\n\n"
            "  askd vectors --out vectors/askd-v1.json      # regenerate the committed file\n"
            "  askd vectors --check vectors/askd-v1.json    # regenerate in memory and compare (1e-12)\n\n"
            "The file format and versioning policy: vectors/SCHEMA.md. A port checks itself with\n"
            "  python -m askd_ref.conformance --impl MODULE"
        ),
    )
    parser.add_argument(
        "--out", type=Path, default=None, metavar="FILE", help="write the vectors to this JSON file"
    )
    parser.add_argument(
        "--check",
        type=Path,
        default=None,
        metavar="FILE",
        help="regenerate and compare with this file (relative 1e-12, absolute 1e-15); exit 1 on a difference",
    )
    parser.add_argument(
        "--version",
        type=int,
        default=None,
        help="schema version to generate (default: that of the --check file, else the newest)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Generate the vectors; write them to ``--out`` and/or compare them with ``--check``."""
    if args.out is None and args.check is None:
        print("askd vectors: give --out FILE and/or --check FILE", file=sys.stderr)
        return 2
    from askd_ref.porting import vectors as gv
    from askd_ref.porting.tolerances import override, tolerance

    expected: dict[str, Any] | None = None
    if args.check is not None:
        try:
            expected = json.loads(args.check.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            print(f"askd vectors: cannot read {args.check}: {exc}", file=sys.stderr)
            return 2
    from askd_ref.porting.conformance import SCHEMA_VERSION, SCHEMA_VERSIONS

    version = args.version
    if version is None:
        version = expected.get("schema_version", SCHEMA_VERSION) if expected is not None else SCHEMA_VERSION
    if version not in SCHEMA_VERSIONS:
        print(
            f"askd vectors: unknown schema version {version!r}; expected one of {SCHEMA_VERSIONS}",
            file=sys.stderr,
        )
        return 2
    data = gv.generate(progress=not args.quiet and sys.stderr.isatty(), version=version)
    if args.out is not None:
        text = gv.dumps(data)
        from askd_ref.io import atomic_write_text

        atomic_write_text(args.out, text)
        print(f"wrote {len(data['cases'])} golden cases ({len(text.encode()) / 1e6:.2f} MB) to {args.out}")
    if expected is not None:
        tol = override(
            tolerance("float64"),
            rtol=1e-12,
            atol=1e-15,
            reason="regeneration of the committed golden vectors",
        )
        diffs = gv.diff_vectors(data, expected, tol)
        if diffs:
            print(f"{args.check}: {len(diffs)} differences from the regenerated vectors:")
            for line in diffs[:50]:
                print(f"  {line}")
            if len(diffs) > 50:
                print(f"  ... and {len(diffs) - 50} more")
            return 1
        print(f"{args.check}: reproduced ({len(data['cases'])} cases within rtol=1e-12, atol=1e-15)")
    return 0
