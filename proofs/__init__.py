"""Symbolic (sympy) derivations of the ASKD specification's equations and theorems."""
