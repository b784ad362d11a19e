"""Faust agents: one module per flow."""
