"""Trafka replication package."""
