"""The deterministic cluster simulator (``sim.core``) and the simulations built on it."""
