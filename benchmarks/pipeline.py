"""Benchmark: wall time of the default `dvc repro` from a fresh clone, and of a no-op `dvc repro`.

Clones the current commit into a temporary directory, runs `dvc repro` there with this environment's Python
(installation time excluded), then runs it again (nothing should re-run), and writes the timings and per-stage
wall times to benchmarks/results/pipeline.json.

    uv run python benchmarks/pipeline.py [--export-cache]

--export-cache copies the clone's DVC cache (content-addressed, so merging is safe) into this checkout's after
timing, so that `dvc repro` here restores the outputs from DVC's run-cache instead of recomputing them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], cwd: Path, env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return elapsed, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export-cache", action="store_true")
    args = ap.parse_args()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        full, log = timed([sys.executable, "-m", "dvc", "repro"], clone, env)
        noop, noop_log = timed([sys.executable, "-m", "dvc", "repro"], clone, env)
        if args.export_cache:
            shutil.copytree(clone / ".dvc/cache", REPO / ".dvc/cache", dirs_exist_ok=True)
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip(),
        "repro_fresh_s": round(full, 1),
        "repro_noop_s": round(noop, 2),
        "stages_run": len(re.findall(r"^Running stage", log, flags=re.M)),
        "noop_stages_run": len(re.findall(r"^Running stage", noop_log, flags=re.M)),
    }
    out = REPO / "benchmarks/results/pipeline.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
