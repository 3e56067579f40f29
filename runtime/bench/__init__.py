"""Offline throughput benchmark of the engine: workloads, timers, rooflines, reports."""
