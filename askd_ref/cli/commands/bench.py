"""``askd bench``: the benchmark command group.

Each benchmark is a module ``askd_ref.cli.commands.bench_<name>`` exposing ``register(subparsers)``,
which adds ``askd bench <name>``::

    askd bench loss --out runs/bench --quick     # loss speed and memory against peers
    askd bench quality --out runs/quality        # every method on the toy task, seeds, sweeps
    askd bench step --out runs/step              # where the time of a trainer step goes
"""

import argparse
import importlib

#: Benchmark modules, in the order ``askd bench --help`` lists them.
BENCH_MODULES: tuple[str, ...] = ("bench_loss", "bench_quality", "bench_step")


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``bench`` group and one subcommand per benchmark module."""
    parser = subparsers.add_parser(
        "bench",
        help="benchmarks: loss speed/memory against peers, quality on the toy task, trainer step time",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="bench_command", required=True, metavar="BENCHMARK")
    for name in BENCH_MODULES:
        importlib.import_module(f"askd_ref.cli.commands.{name}").register(sub)
