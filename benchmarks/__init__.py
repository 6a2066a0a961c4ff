"""Benchmarks: each measures the workbench against its floor in the same run."""
