"""Destinations: where change records are written (SQL databases; files later).

Named "sinks" after the data-integration term; not to be confused with Faust's ``Agent.add_sink``.
"""
