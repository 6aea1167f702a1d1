"""The ``askd`` command line: one subcommand per module in :mod:`askd_ref.cli.commands`.

Each command module exposes ``register(subparsers)``, which adds its parser and sets
``func`` (a callable taking the parsed namespace and returning an exit code). Every command
shares one error path (:mod:`askd_ref.cli.commands._errors`): a one-line message naming the problem
and the fix, exit code 2 for usage errors and 1 for run-time ones, and the traceback only with
``--debug``.
"""

import argparse
import importlib
import re
from collections.abc import Sequence

from askd_ref.cli.commands._errors import report

#: Command modules, in the order ``askd --help`` lists them.
COMMAND_MODULES: tuple[str, ...] = ("example", "vectors", "demo", "distill", "generate", "eval", "bench")


class _HelpFormatter(argparse.HelpFormatter):
    """Prose paragraphs wrapped, indented example lines kept; every option's default in its help."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = re.split(r"\n\s*\n", text.strip("\n"))
        out = []
        for para in paragraphs:
            if all(line.startswith(" ") for line in para.splitlines()):
                out.append("\n".join(indent + line for line in para.splitlines()))
            else:
                out.append(super()._fill_text(para, width, indent))
        return "\n\n".join(out)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        plain = (
            action.default is None
            or action.default is argparse.SUPPRESS
            or isinstance(action.default, bool)
            or action.required
            or not action.option_strings
            or "default" in text.lower()
        )
        return text if plain else f"{text} (default: %(default)s)".lstrip()


#: Help for options some commands declare without any (the same meaning everywhere).
_COMMON_HELP: dict[str, str] = {
    "--device": "cpu, cuda or cuda:N",
    "--dtype": "floating-point type of the model weights",
    "--no-progress": "no progress bars (default: show them)",
    "--quiet": "no progress bar (default: show it)",
    "--seed": "random seed",
}


def _plain(text: str | None) -> str | None:
    """A docstring made readable in a terminal: no reST roles, literal quotes or ``::`` markers."""
    if text is None:
        return None
    text = re.sub(r":(?:mod|func|class|meth|attr):`~?([^`]+)`", r"\1", text)
    text = text.replace("``", "")
    text = re.sub(r"(?m)^::\s*$\n?", "", text)
    return re.sub(r"::$", ":", text, flags=re.M)


def _polish(parser: argparse.ArgumentParser) -> None:
    """Apply the help conventions to ``parser`` and all its subcommands."""
    parser.formatter_class = _HelpFormatter
    parser.description = _plain(parser.description)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _polish(sub)
        elif not action.help and action.option_strings:
            action.help = _COMMON_HELP.get(action.option_strings[-1], action.help)


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
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"askd_ref.cli.commands.{name}").register(sub)
    _add_debug(parser)
    _polish(parser)
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

