"""Benchmark: wall time of the default `dvc repro` from a fresh clone, per-stage wall time and peak memory, and
the wall time of a no-op `dvc repro` (three in a row: the first right after the repro, then two more).

Clones the current commit into a temporary directory, runs `dvc repro` there with this environment's Python
(installation time excluded; PYTHONPATH points at the clone, so its stages import the committed code, not
this checkout's), then runs it again (nothing should re-run), and writes the timings to
benchmarks/results/pipeline.json.

    uv run python benchmarks/pipeline.py [--export-cache]

Per stage (Linux only, from /proc): wall time from DVC's "Running stage" line to the next one (so it includes
DVC's hashing and caching of the stage's outputs), and the peak resident memory (VmHWM) of the stage's own
processes, i.e. every descendant of the `dvc repro` process while that stage runs, DVC itself excluded. The
memory is sampled every 0.1 s; VmHWM is a high-water mark, so a sample shortly before a process exits suffices.

--export-cache copies the clone's DVC cache (content-addressed, so merging is safe) into this checkout's after
timing, so that `dvc repro` here restores the outputs from DVC's run-cache instead of recomputing them.
--keep DIR clones into DIR (which must not exist) and leaves it there, e.g. to compare its dvc.lock and metrics
with this checkout's; --out FILE writes the timings there instead (a second measurement beside the first).
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
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGE_LINE = re.compile(r"^Running stage '([^']+)'")


def _children(pid: int) -> list[int]:
    """Direct children of pid (Linux /proc/<pid>/task/*/children)."""
    out = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:  # the process exited between being listed and being read
        return out
    for task in tasks:
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _peak_kib(pid: int) -> int:
    """VmHWM (peak resident set, KiB) of pid, 0 if it has gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class StageWatcher:
    """Follows `dvc repro`'s output: stage start times, and per stage the peak memory of dvc's descendants."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.current: str | None = None
        self.stages: dict[str, dict] = {}  # name -> {"start": t, "end": t, "peak_kib": k}
        self.log: list[str] = []
        self._t0 = time.perf_counter()

    def read_output(self) -> None:
        for line in self.proc.stdout:
            self.log.append(line)
            m = STAGE_LINE.match(line)
            if m:
                now = time.perf_counter() - self._t0
                if self.current:
                    self.stages[self.current]["end"] = now
                self.current = m.group(1)
                self.stages[self.current] = {"start": now, "end": None, "peak_kib": 0}
        if self.current:
            self.stages[self.current]["end"] = time.perf_counter() - self._t0

    def sample_memory(self) -> None:
        while self.proc.poll() is None:
            stage = self.current
            if stage:
                pids, todo = [], _children(self.proc.pid)
                while todo:
                    pid = todo.pop()
                    pids.append(pid)
                    todo += _children(pid)
                peak = max((_peak_kib(p) for p in pids), default=0)
                self.stages[stage]["peak_kib"] = max(self.stages[stage]["peak_kib"], peak)
            time.sleep(0.1)


def repro(cwd: Path, env: dict) -> tuple[float, StageWatcher]:
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "dvc", "repro"], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    watcher = StageWatcher(proc)
    sampler = threading.Thread(target=watcher.sample_memory, daemon=True)
    sampler.start()
    watcher.read_output()
    proc.wait()
    sampler.join()
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"dvc repro failed in {cwd}:\n{''.join(watcher.log[-60:])}")
    return elapsed, watcher


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export-cache", action="store_true")
    ap.add_argument("--keep", type=Path, help="clone into this new folder and keep it")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/pipeline.json")
    args = ap.parse_args()
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        clone = args.keep.resolve() if args.keep else Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        # The environment's editable install maps `promptlab` to this checkout; PYTHONPATH makes the stages
        # import the clone's own package (the committed code) instead.
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               "PYTHONPATH": str(clone)}
        full, watcher = repro(clone, env)
        noops = [repro(clone, env) for _ in range(3)]  # the first right after the repro, then two more
        noop, noop_watcher = noops[0]
        if args.export_cache:
            shutil.copytree(clone / ".dvc/cache", REPO / ".dvc/cache", dirs_exist_ok=True)
    stages = {name: {"wall_s": round(s["end"] - s["start"], 1), "peak_mib": round(s["peak_kib"] / 1024)}
              for name, s in watcher.stages.items()}
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip(),
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "repro_fresh_s": round(full, 1),
        "repro_noop_s": round(noop, 2),
        "repro_noop_all_s": [round(t, 2) for t, _ in noops],
        "stages_run": len(stages),
        "noop_stages_run": len(noop_watcher.stages),
        "peak_mib_max": max((s["peak_mib"] for s in stages.values()), default=0),
        "stages": stages,
    }
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
