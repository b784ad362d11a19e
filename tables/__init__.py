"""Faust tables, one per module, no logic."""
