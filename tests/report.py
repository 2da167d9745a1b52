"""Figures collected by the reliability suite (one module, so conftest and tests share the dict)."""

RELIABILITY: dict[str, dict] = {}
