"""The one error path of every ``askd`` command (used by :func:`askd_ref.cli.main`).

A command reports a problem by raising; :func:`report` turns the exception into one line on
stderr naming the problem and, where there is one, the fix, and into the exit code:

* 2 — usage: an argument or run file is wrong (:class:`UsageError`, or a file named by an
  argument does not exist; argparse's own errors also exit 2);
* 1 — run time: anything that goes wrong while the command runs (bad data, a missing optional
  extra, an out-of-memory, a bug);
* 130 — interrupted (Ctrl-C).

The traceback is printed only with ``--debug``.
"""

import os
import sys
import traceback

__all__ = ["MissingExtraError", "RunInterrupted", "UsageError", "launch_rank", "missing_extra", "report"]

def launch_rank() -> int:
    """This process's rank as set by ``accelerate launch``/``torchrun`` (0 when run directly)."""
    return int(os.environ.get("RANK", "0") or 0)


#: Optional dependencies → the ``pip install`` extra that provides them.
EXTRAS: dict[str, str] = {"trl": "bench"}


class UsageError(ValueError):
    """A wrong argument or run-file entry: exit code 2, message names the argument and the fix."""


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C after saving its work; the message says how to continue."""


class MissingExtraError(RuntimeError):
    """An optional dependency is not installed: the message names the extra to install."""


def missing_extra(err: ModuleNotFoundError, what: str) -> MissingExtraError:
    """``MissingExtraError`` for ``err`` (raised importing an optional module needed by ``what``).

    >>> str(missing_extra(ModuleNotFoundError("no", name="trl"), "askd bench loss"))
    "askd bench loss needs the optional package 'trl'; install it with: pip install 'askd-ref[bench]'"
    """
    top = (err.name or "").split(".")[0]
    extra = EXTRAS.get(top)
    fix = f"pip install 'askd-ref[{extra}]'" if extra else f"pip install {top}"
    return MissingExtraError(f"{what} needs the optional package '{top}'; install it with: {fix}")


def report(err: BaseException, command: str, *, debug: bool) -> int:
    """Print ``err`` as one line (and the traceback with ``debug``) and return the exit code."""
    if debug:
        traceback.print_exception(err)
    prefix = f"askd {command}" if command else "askd"
    if isinstance(err, KeyboardInterrupt):
        if isinstance(err, RunInterrupted) and launch_rank() != 0:
            return 130  # every rank stopped after the same step; the main process says so once
        detail = f": {err}" if str(err) else " (nothing saved since the last checkpoint)"
        print(f"{prefix}: interrupted{detail}", file=sys.stderr)
        return 130
    if isinstance(err, ModuleNotFoundError) and (err.name or "").split(".")[0] in EXTRAS:
        err = missing_extra(err, prefix)
    text = str(err).strip()
    message = text.splitlines()[0] if text else type(err).__name__
    python_hint = "(pass skip_bad_lines=True to skip bad lines)"  # engine.data speaks to Python callers
    if python_hint in message:
        fix = "data.skip_bad_lines: true in the run file" if command == "distill" else "--skip-bad-lines"
        message = message.replace(python_hint, f"(use {fix} to skip bad lines)")
    if isinstance(err, FileNotFoundError) and err.filename is not None:
        message = f"no such file or directory: {err.filename}"
    if isinstance(err, (UsageError, FileNotFoundError)):
        print(f"{prefix}: error: {message}", file=sys.stderr)
        return 2
    if not isinstance(err, (ValueError, OSError, MissingExtraError)):
        message = f"{type(err).__name__}: {message}" + (
            "" if debug else " (rerun with --debug for the traceback)"
        )
    print(f"{prefix}: error: {message}", file=sys.stderr)
    return 1
