"""Short table of a nanoflow_search.sh output directory: each verified bucket's prediction
errors and plan / dense, and the benchmark's progress lines."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(out: Path) -> None:
    v = out / "verify.json"
    if v.exists():
        d = json.loads(v.read_text())
        for key in ("buckets", "fp8_buckets"):
            print(key)
            for b in d.get(key, []):
                print(f" d={b['decodes']:5d} p={b['prefill_tokens']:5d} c={b['context']:5d} "
                      f"{(b['plan'] or b.get('candidate') or 'dense')[-28:]:>28} "
                      f"dense_err={b.get('dense_error')} plan_err={b.get('plan_error')} "
                      f"plan/dense={b.get('plan_vs_dense')} {b.get('error', '')[:80]}")  # fmt: skip
        print("timeline", d.get("timeline"))
    log = out / "log.txt"
    if log.exists():
        for line in log.read_text().splitlines():
            if line.startswith(("[bench] nanolang", "[nanoflow_search]")) or "Error" in line:
                print(line[:200])


if __name__ == "__main__":
    main(Path(sys.argv[1]))
