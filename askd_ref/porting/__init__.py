"""Tools for ports of the spec: the float64 NumPy reference, the golden vectors and their
conformance runner, the tolerance table, and the generated tables of ``docs/porting.md``.

:mod:`~askd_ref.porting.reference` and :mod:`~askd_ref.porting.conformance` need only NumPy (they
never import torch); :mod:`~askd_ref.porting.conformance_torch` adapts :mod:`askd_ref` itself to
the conformance protocol and :mod:`~askd_ref.porting.vectors` writes the golden vectors through it.
``python -m askd_ref.conformance`` runs the conformance runner.
"""
