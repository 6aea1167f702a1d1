"""Alias of :mod:`askd_ref.porting.tables` (the generated tables of ``docs/porting.md``).

The code lives in ``askd_ref/porting/tables.py``;
this module keeps ``python -m askd_ref.porting_tables --check|--write`` working.
"""

import sys

from askd_ref.porting.tables import (
    BLOCKS,
    main,
    options_table,
    render,
    signature_table,
    update,
)

__all__ = [
    "BLOCKS",
    "main",
    "options_table",
    "render",
    "signature_table",
    "update",
]

if __name__ == "__main__":
    sys.exit(main())
