"""Trafka broker package."""
