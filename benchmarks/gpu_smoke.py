"""GPU smoke test: the micro configuration of tests/test_pipeline.py, end to end through the real `dvc repro`,
with `model.device: cuda` (and bf16 feature extraction) in a temporary git repo. A few minutes on one GPU.
Run it whenever a GPU is available and put its line in BENCHMARKS.md:

    uv run python benchmarks/gpu_smoke.py                 # cuda, bf16 features
    uv run python benchmarks/gpu_smoke.py --device cpu    # the same pipeline on the CPU (a check of the script)

It fails (non-zero exit, the failing stage's output) if any stage fails; on success it writes
benchmarks/results/gpu_smoke.json: the device, torch/CUDA versions, wall time, and the base2new average per
method (so a GPU run can be compared with the CPU run of the same micro configuration)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _pipeline_test_module():
    spec = importlib.util.spec_from_file_location("test_pipeline", REPO / "tests" / "test_pipeline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/gpu_smoke.json"))
    args = ap.parse_args()
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("gpu_smoke: no CUDA device here (use --device cpu to check the script)")
    micro = _pipeline_test_module()
    with tempfile.TemporaryDirectory() as tmp:
        repo = micro._micro_repo(Path(tmp))
        params = yaml.safe_load((repo / "params.yaml").read_text())
        params["model"]["device"] = args.device
        params["features"].update({"precision": "bf16" if args.device.startswith("cuda") else "fp32",
                                   "num_workers": 2})
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=repo, env=micro.ENV,
                              capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            print(proc.stdout[-6000:], proc.stderr[-6000:], sep="\n")
            sys.exit(f"gpu_smoke: dvc repro failed on {args.device} after {wall:.0f} s")
        summary = json.loads((repo / "metrics/summary.json").read_text())
    result = {"device": args.device, "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda")
              else "cpu", "torch": torch.__version__, "cuda": torch.version.cuda, "wall_s": round(wall, 1),
              "base2new_average": summary["base2new"]["average"]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"gpu_smoke: dvc repro of the micro configuration on {result['device_name']}: {wall:.0f} s, "
          f"{len(result['base2new_average'])} methods scored")


if __name__ == "__main__":
    main()
