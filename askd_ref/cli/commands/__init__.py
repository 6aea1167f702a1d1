"""Subcommands of the ``askd`` CLI (see :mod:`askd_ref.cli`)."""
