"""Trafka's tools: the protocol code generator, CLI helpers and benchmarks."""
