"""Formatting lives here only: the diagnosis is a dict (the JSON contract), rendered as text, JSON or HTML."""
