"""Benchmarks of askd-ref (``askd bench ...``): the loss benchmark against peers lives in
:mod:`askd_ref.bench.loss`, the trainer-step breakdown in :mod:`askd_ref.bench.step`, the toy
quality benchmark in :mod:`askd_ref.bench.quality`, and the check of a GPU session's plan in
:mod:`askd_ref.bench.plan`."""
