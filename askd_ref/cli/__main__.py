"""``python -m askd_ref.cli ...``: the ``askd`` command without the installed script."""

import sys

from askd_ref.cli import main

sys.exit(main())
