"""Benchmark 4: CoCoOp on the default world, batch 1 (the paper's) vs chunked batching at batch 32.

The default run's base-to-new training set (data/features/synthetic, seed 1's 16-shot draw of the 24 base
classes: 384 images, V cached views) and the default model (the pretrained tiny CLIP of params.yaml), the
cocoop params block with batch_size overridden. Needs a prior `dvc repro` up to the features and prompts stages.

Each setting runs in a fresh process: one epoch of promptlab.train.train, timed; memory = the process's peak
RSS (getrusage ru_maxrss) after the epoch minus its RSS (/proc/self/statm) just before it, i.e. what the epoch
added on top of the loaded model and data (torch's CPU allocations are invisible to tracemalloc).

    uv run python benchmarks/cocoop_batching.py [--batch-sizes 1 32] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import _common as C


def child(batch_size: int, seed: int, epochs: int) -> dict:
    import torch

    from promptlab.clip.model import load_clip
    from promptlab.config import load_params
    from promptlab.methods.base import FrozenCLIP
    from promptlab.artifacts import Artifacts, protocol_classes
    from promptlab.runner import build_method
    from promptlab.train import train

    os.chdir(C.REPO)
    p = load_params()
    dataset = p.data.datasets[0]
    cfg = p.cocoop.model_copy(update={"batch_size": batch_size, "epochs": epochs})
    clip = FrozenCLIP(load_clip(p.model.name, p.model.pretrained, p.model.device))
    art = Artifacts()
    all_classes = art.class_set(dataset)
    keep = protocol_classes(True, len(all_classes))
    classes = all_classes.subset(keep)
    method = build_method("cocoop", cfg, clip, classes, seed)
    data = art.training_data(dataset, seed, keep, method.needs_patches)
    before_rss, before_peak = C.rss_mib(), C.peak_rss_mib()
    t0 = time.perf_counter()
    history = train(method, data, classes, cfg, seed=seed)
    wall = time.perf_counter() - t0
    peak = C.peak_rss_mib()
    n = len(data.labels)
    steps = n // batch_size if n >= batch_size else 1
    return {"batch_size": batch_size, "chunk_size": cfg.chunk_size, "images": n, "classes": len(classes),
            "views": int(data.features.shape[1]), "epochs": epochs, "steps_per_epoch": steps,
            "epoch_s": round(wall / epochs, 3), "s_per_step": round(wall / (epochs * steps), 4),
            "s_per_image": round(wall / (epochs * steps * min(batch_size, n)), 5),
            "rss_before_mib": round(before_rss, 1), "peak_rss_before_mib": round(before_peak, 1),
            "peak_rss_mib": round(peak, 1), "peak_rss_delta_mib": round(peak - before_rss, 1),
            "final_loss": round(history[-1]["loss"], 4), "torch_threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print("RESULT " + json.dumps(child(args.child, args.seed, args.epochs)))
        return
    result = C.Result("cocoop_batching")
    result["goal"] = "report: time per epoch and peak memory, batch 1 vs chunked batch 32"
    result["memory_measure"] = ("peak RSS (resource.getrusage ru_maxrss) after the epoch minus RSS (/proc/self/statm) "
                                "just before it, one fresh process per batch size")
    runs = []
    for bs in args.batch_sizes:
        proc = subprocess.run([sys.executable, __file__, "--child", str(bs), "--seed", str(args.seed),
                               "--epochs", str(args.epochs)], capture_output=True, text=True, cwd=C.REPO)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            sys.exit(f"batch {bs} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        runs.append(json.loads(line[len("RESULT "):]))
        print(runs[-1], flush=True)
    result["runs"] = runs
    by = {r["batch_size"]: r for r in runs}
    if 1 in by and 32 in by:
        result["epoch_speedup_32_vs_1"] = round(by[1]["epoch_s"] / by[32]["epoch_s"], 2)
        result["memory_ratio_32_vs_1"] = round(by[32]["peak_rss_delta_mib"] / max(by[1]["peak_rss_delta_mib"], 0.1), 1)
    result.write()


if __name__ == "__main__":
    main()
