"""Stage `run@<method>`: every run of one method that params ask for (promptlab/runner.py): base-to-new per
dataset and seed, domain shift and cross-dataset transfer from their source per seed, few-shot curves per
dataset, shot count and seed. Each run trains on its few-shot draw (or reuses an earlier run's identical
training), saves the learned prompt, logs per-epoch curves (DVCLive) and is evaluated.

One stage per method keeps `dvc exp run -S coop.lr=…` re-running only that method, and pays the cost of
importing torch + open_clip once per method instead of once per run."""

import argparse
from pathlib import Path

from promptlab.artifacts import Artifacts
from promptlab.cli import run
from promptlab.clip.model import load_clip
from promptlab.config import load_params
from promptlab.data.pixels import PixelOptions
from promptlab.io import atomic_dir
from promptlab.methods import methods
from promptlab.methods.base import FrozenCLIP
from promptlab.runner import run_method


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--method", required=True, choices=sorted(methods()))
    ap.add_argument("--shards", required=True, help="directory of the shard stage's outputs")
    ap.add_argument("--features", required=True, help="directory of the features stage's outputs")
    ap.add_argument("--prompts", required=True, help="directory of the prompt-bank stage's outputs")
    ap.add_argument("--out", required=True, help="directory for the learned prompts")
    ap.add_argument("--metrics", required=True, help="directory for per-run metrics JSON (accuracies, counts)")
    ap.add_argument("--curves", required=True, help="directory for per-run DVCLive curves")
    args = ap.parse_args()
    p = load_params()
    clip = FrozenCLIP(load_clip(p.model.name, p.model.pretrained, p.model.device))
    pixels = PixelOptions(p.features.crop_scale_min, p.features.num_workers)  # pixel methods: as the features
    art = Artifacts(Path(args.shards), Path(args.features), Path(args.prompts), pixels)
    with atomic_dir(args.out) as out, atomic_dir(args.metrics) as metrics, atomic_dir(args.curves) as curves:
        run_method(p, args.method, clip, art, out, metrics, curves)


if __name__ == "__main__":
    run(main)
