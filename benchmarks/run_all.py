"""Run the benchmark harness: every benchmark in its own process, results in benchmarks/results/<name>.json.

    uv run python benchmarks/run_all.py                      # all but the whole-pipeline one (~5-10 min)
    uv run python benchmarks/run_all.py --only extraction    # one (or several) by name
    uv run python benchmarks/run_all.py --pipeline           # also benchmarks/pipeline.py (~15 min more)

Benchmarks (numbers in BENCHMARKS.md; each script takes its own flags when run directly, see its --help):
    cached_training   CoOp from cached features vs the classic per-step image tower (+ logits equality)
    text_truncation   text encoder truncated to the longest prompt vs the full 77-token context (+ equality)
    extraction        shard -> feature extraction vs the model's forward alone, 0 and N DataLoader workers
    cocoop_batching   CoCoOp epoch time and peak memory, batch 1 vs chunked batch 32 (needs the default world)
    scaling           extraction and training time vs number of images and classes (table + PNG)
    pipeline          wall time of a fresh and a no-op `dvc repro` (only with --pipeline)

The machine may be shared: before the first benchmark this waits (polling every --poll s, at most --max-wait s)
for the 1-minute load average to drop below --max-load, then measures anyway; every result file records the
load average at its start and end. Child processes get OMP_WAIT_POLICY=PASSIVE unless it is set (or
--omp-active is given): with OpenMP's default spin-waiting, a 2-thread torch process on a 2-core machine that
another process is using spends most of its time spinning (small CoOp steps ran 10-20x slower).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ["cached_training", "text_truncation", "extraction", "cocoop_batching", "scaling"]


def wait_for_quiet(max_load: float, max_wait: float, poll: float) -> dict:
    start = time.monotonic()
    while True:
        load = os.getloadavg()[0]
        waited = time.monotonic() - start
        if load < max_load or waited >= max_wait:
            return {"load_1min": round(load, 2), "waited_s": round(waited), "quiet": load < max_load}
        print(f"load average {load:.2f} >= {max_load}: waiting ({waited:.0f}/{max_wait:.0f} s)", flush=True)
        time.sleep(poll)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=BENCHMARKS + ["pipeline"], help="run only these")
    ap.add_argument("--pipeline", action="store_true", help="include benchmarks/pipeline.py (~15 min)")
    ap.add_argument("--max-load", type=float, default=1.5)
    ap.add_argument("--max-wait", type=float, default=600.0, help="seconds; 0 = do not wait")
    ap.add_argument("--poll", type=float, default=30.0)
    ap.add_argument("--omp-active", action="store_true", help="keep OpenMP's default (spinning) wait policy")
    args = ap.parse_args()
    names = args.only or BENCHMARKS + (["pipeline"] if args.pipeline else [])
    env = dict(os.environ)
    if not args.omp_active:
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    summary = {"wait": wait_for_quiet(args.max_load, args.max_wait, args.poll) if args.max_wait > 0 else None,
               "omp_wait_policy": env.get("OMP_WAIT_POLICY", "(default)"), "runs": {}}
    failed = []
    for name in names:
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, str(HERE / f"{name}.py")], env=env, cwd=HERE.parent)
        wall = time.perf_counter() - t0
        summary["runs"][name] = {"rc": proc.returncode, "wall_s": round(wall, 1)}
        if proc.returncode != 0:
            failed.append(name)
    print("\n== summary")
    for name in names:
        path = HERE / "results" / f"{name}.json"
        res = json.loads(path.read_text()) if path.exists() and summary["runs"][name]["rc"] == 0 else {}
        summary["runs"][name].update({k: res[k] for k in ("ratio", "goal", "goal_met") if k in res})
        print(f"{name:16s} rc={summary['runs'][name]['rc']} {summary['runs'][name]['wall_s']:7.1f} s  "
              f"ratio={res.get('ratio', '-')}  goal_met={res.get('goal_met', '-')}  ({res.get('goal', '')})")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "run_all.json").write_text(json.dumps(summary, indent=2) + "\n")
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
