"""`python -m benchmarks` (or `make bench`): run every benchmark, print tables, write JSON.

`python -m benchmarks NAME ...` runs only the named ones (vault, vault_scale, deid, lossless, ...).
"""

import importlib
import sys

ALL = ["vault", "vault_scale", "import", "deid", "lossless", "pipeline", "cohort", "widgets", "dicom", "portal"]

wanted = sys.argv[1:] or ALL
for name in wanted:
    try:
        module = importlib.import_module(f"benchmarks.bench_{name}")
    except ModuleNotFoundError:
        print(f"(no benchmark named {name})")
        continue
    module.main([])
    print()
