"""Alias of :mod:`askd_ref.porting.conformance` (the port conformance runner).

The code lives in ``askd_ref/porting/conformance.py``;
this module keeps ``python -m askd_ref.conformance --impl MODULE_OR_FILE`` (the command
ports are told to run) and ``import askd_ref.conformance`` working.
"""

import sys

from askd_ref.porting.conformance import (
    FORMAT,
    FUNCTIONS,
    SCHEMA_VERSION,
    SCHEMA_VERSIONS,
    BatchSpec,
    CaseResult,
    Check,
    Comparison,
    FunctionInfo,
    OptionsSpec,
    Report,
    compare,
    decode,
    default_vectors_path,
    encode,
    format_report,
    load_impl,
    load_vectors,
    main,
    materialise,
    run_case,
    run_conformance,
)

__all__ = [
    "FORMAT",
    "FUNCTIONS",
    "SCHEMA_VERSION",
    "SCHEMA_VERSIONS",
    "BatchSpec",
    "CaseResult",
    "Check",
    "Comparison",
    "FunctionInfo",
    "OptionsSpec",
    "Report",
    "compare",
    "decode",
    "default_vectors_path",
    "encode",
    "format_report",
    "load_impl",
    "load_vectors",
    "main",
    "materialise",
    "run_case",
    "run_conformance",
]

if __name__ == "__main__":
    sys.exit(main())
