"""`python -m benchmarks` (or `make bench`): run every benchmark, print a table, write JSON."""

from .bench_vault import main as vault_main

vault_main([])
