"""Benchmark: can pretraining and extraction be bit-identical across CPUs? (issue 15, point 7)

Each setting runs in a fresh process (the dispatch env variables are read once, at library load): a short tiny
CLIP pretraining (the pretrain stage's code, fewer steps) and an extraction pass of that model over fixed
images. It records the SHA-256 of the trained weights and of the features, the largest difference from the
machine's native setting, and the wall time. The settings pin, one layer at a time, the three places where
torch on CPU picks kernels by the CPU: ATen's own vector kernels (ATEN_CPU_CAPABILITY), MKL's GEMM
(MKL_CBWR: conditional numerical reproducibility) and oneDNN's convolutions (ONEDNN_MAX_CPU_ISA), plus the
thread count (a reduction split over more threads sums in another order).

    python benchmarks/cpu_determinism.py [--steps 40]     # -> benchmarks/results/cpu_determinism.json
    python benchmarks/cpu_determinism.py --steps 20 --settings threads1 portable_threads1 --repeat 2 \
        --name cpu_determinism_cost                        # the cost, one thread each, run alternately

Every setting's rerun gives the same hashes (--repeat checks it); the cost is best of the repeats.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time

from _common import REPO, Result

PORTABLE = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41"}
SETTINGS = {
    "native": {},
    "threads1": {"threads": 1},
    "aten_avx2": {"env": {"ATEN_CPU_CAPABILITY": "avx2"}},
    "aten_default": {"env": {"ATEN_CPU_CAPABILITY": "default"}},
    "mkl_cbwr_compatible": {"env": {"MKL_CBWR": "COMPATIBLE"}},
    "portable": {"env": PORTABLE},
    "portable_threads1": {"env": PORTABLE, "threads": 1},
}

CHILD = r"""
import hashlib, json, sys, time
import numpy as np, torch
threads = int(sys.argv[2])
if threads:
    torch.set_num_threads(threads)
from promptlab.clip.features import encode_images
from promptlab.clip.pretrain import pretrain, to_model_input
from promptlab.config import PretrainParams
t0 = time.perf_counter()
cfg = PretrainParams(steps=int(sys.argv[1]), batch_size=64, warmup_steps=5)
model = pretrain("promptlab-tiny", cfg, 32, log=lambda s: None)
t1 = time.perf_counter()
sd = model.state_dict()
w = hashlib.sha256(b"".join(v.contiguous().numpy().tobytes() for v in sd.values())).hexdigest()
images = np.random.default_rng(0).integers(0, 256, (256, 32, 32, 3), dtype=np.uint8)
with torch.no_grad():
    g, p = encode_images(model, to_model_input(images, (0.5,) * 3, (0.5,) * 3), patches=True)
t2 = time.perf_counter()
f = hashlib.sha256(g.numpy().tobytes() + p.numpy().tobytes()).hexdigest()
np.save(sys.argv[3] + "_w.npy", torch.cat([v.flatten().float() for v in sd.values()]).numpy())
np.save(sys.argv[3] + "_f.npy", g.numpy())
print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
                  "weights_sha256": w[:16], "features_sha256": f[:16], "pretrain_s": round(t1 - t0, 2),
                  "extract_s": round(t2 - t1, 2)}))
"""


def main() -> None:
    import numpy as np

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--tmp", default="/tmp/cpu_determinism")
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--repeat", type=int, default=1, help="runs of each setting, interleaved")
    ap.add_argument("--name", default="cpu_determinism", help="result file name")
    args = ap.parse_args()
    os.makedirs(args.tmp, exist_ok=True)
    res = Result(args.name)
    res["steps"] = args.steps
    rows: dict = {}
    for rep in range(args.repeat):
        for name in args.settings:
            s = SETTINGS[name]
            env = {**os.environ, **s.get("env", {}), "PYTHONPATH": str(REPO)}
            out = subprocess.run([sys.executable, "-c", CHILD, str(args.steps), str(s.get("threads", 0)),
                                  f"{args.tmp}/{name}"], env=env, capture_output=True, text=True, check=True)
            run = json.loads(out.stdout.strip().splitlines()[-1])
            print(name, rep, run, flush=True)
            row = rows.setdefault(name, {"env": s.get("env", {}), **run, "pretrain_s_runs": []})
            row["pretrain_s_runs"].append(run["pretrain_s"])
            row["pretrain_s"] = min(row["pretrain_s_runs"])
            row["rerun_identical"] = row.get("rerun_identical", True) and (
                (run["weights_sha256"], run["features_sha256"]) == (row["weights_sha256"], row["features_sha256"]))
    ref = args.settings[0]
    res["reference"] = ref
    for name, row in rows.items():  # largest elementwise difference from the first setting
        for kind in ("w", "f"):
            a, b = np.load(f"{args.tmp}/{ref}_{kind}.npy"), np.load(f"{args.tmp}/{name}_{kind}.npy")
            row[f"max_abs_diff_{'weights' if kind == 'w' else 'features'}"] = float(np.abs(a - b).max())
    res["settings"] = rows
    res.write()


if __name__ == "__main__":
    main()
