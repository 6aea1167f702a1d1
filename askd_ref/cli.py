"""The ``askd`` command line: one subcommand per module in :mod:`askd_ref.commands`.

Each command module exposes ``register(subparsers)``, which adds its parser and sets
``func`` (a callable taking the parsed namespace and returning an exit code).
"""

import argparse
import importlib
import sys
from collections.abc import Sequence

#: Command modules, in the order ``askd --help`` lists them.
COMMAND_MODULES: tuple[str, ...] = ("vectors", "demo", "distill", "generate", "eval", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="askd",
        description="askd-ref: the reference implementation of ASKD as specified by askd-ref.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"askd_ref.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
