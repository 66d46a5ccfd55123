"""Benchmark: the offline demo as shipped (`aisci run --demo`, the grokking template at
its smoke size, the scripted model, real experiments, LaTeX and review) from a new lab to
its summary. Prints the wall time against the 300 s target, and the stage timings the
lab's status reports.

    python benchmarks/bench_demo.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 300.0


def main() -> None:
    lab = Path(tempfile.mkdtemp(prefix="aisci-demo-")) / "lab"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AISCI_WORK_")}
    aisci = str(Path(sys.executable).with_name("aisci"))
    load = os.getloadavg()[0]
    t0 = time.monotonic()
    r = subprocess.run([aisci, "run", "--demo", "--lab", str(lab)], env=env,
                       capture_output=True, text=True, timeout=3600)
    took = time.monotonic() - t0
    print(f"offline demo as shipped: exit {r.returncode}, {took:.0f} s "
          f"(target {TARGET_S:.0f} s: {'met' if took <= TARGET_S else 'MISSED'}); "
          f"{os.cpu_count()} cpus, load {load:.2f} at start")
    status = subprocess.run([aisci, "status", "--lab", str(lab)], capture_output=True,
                            text=True, timeout=60)
    print(status.stdout.rstrip())


if __name__ == "__main__":
    main()
