"""The ``askd`` command line: one subcommand per module in :mod:`askd_ref.commands`.

Each command module exposes ``register(subparsers)``, which adds its parser and sets
``func`` (a callable taking the parsed namespace and returning an exit code). Every command
shares one error path (:mod:`askd_ref.commands._errors`): a one-line message naming the problem
and the fix, exit code 2 for usage errors and 1 for run-time ones, and the traceback only with
``--debug``.
"""

import argparse
import importlib
import sys
from collections.abc import Sequence

from askd_ref.commands._errors import report

#: Command modules, in the order ``askd --help`` lists them.
COMMAND_MODULES: tuple[str, ...] = ("vectors", "demo", "distill", "generate", "eval", "bench")


def _add_debug(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="on an error, print the full traceback (default: one line)",
    )
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _add_debug(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="askd",
        description="askd-ref: the reference implementation of ASKD (quality-adaptive skewed distillation).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"askd_ref.commands.{name}").register(sub)
    _add_debug(parser)
    return parser


def _command_name(args: argparse.Namespace) -> str:
    parts = [getattr(args, "command", None), getattr(args, "bench_command", None)]
    return " ".join(p for p in parts if p)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the command; errors become one line and exit code 2 or 1 (see above)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    try:
        code: int = args.func(args)
    except SystemExit:
        raise
    except BaseException as err:  # the single place errors become messages
        return report(err, _command_name(args), debug=debug)
    return code


if __name__ == "__main__":
    sys.exit(main())
