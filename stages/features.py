"""Stage `features@<dataset>`: encode every sharded image once (V augmented views for train) with the frozen
image tower; writes projected global + patch features per split (fp16 safetensors), each validated against
the manifest (great-expectations; report in --report)."""

import argparse
import sys
from pathlib import Path

import torch

from promptlab.cli import run
from promptlab.clip.extract import extract_split
from promptlab.clip.model import load_clip
from promptlab.config import load_params
from promptlab.data.shards import read_manifest
from promptlab.io import atomic_dir, read_json, save_tensors
from promptlab.validate import gate, validate_features


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shards", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--report", required=True, help="validation report (JSON)")
    args = ap.parse_args()
    p = load_params()
    torch.set_grad_enabled(False)
    clip = load_clip(p.model.name, p.model.pretrained, p.model.device)
    manifest = read_manifest(args.shards)
    n_classes = len(read_json(Path(args.shards) / "classnames.json"))
    reports = []
    with atomic_dir(args.out) as tmp:
        for split in ("train", "val", "test"):
            expected = manifest.filter(manifest["split"] == split)["key"].to_list()
            if not expected:
                continue
            n_views = p.features.train_views if split == "train" else 1
            tensors, keys = extract_split(clip, args.shards, split, n_views=n_views, seed=p.features.seed,
                                          crop_scale_min=p.features.crop_scale_min,
                                          batch_size=p.features.batch_size, patches=p.features.patches,
                                          num_workers=p.features.num_workers, precision=p.features.precision,
                                          total=len(expected), log=lambda line: print(line, file=sys.stderr))
            reports.append(validate_features(tensors, keys, expected, n_classes, clip.model.visual.output_dim,
                                             name=f"features:{Path(args.out).name}/{split}"))
            save_tensors(Path(tmp) / f"{split}.safetensors", tensors,
                         {"keys": keys, "model": p.model.name, "pretrained": p.model.pretrained})
            print(f"features {split}: {tuple(tensors['global'].shape)}")
        gate(reports, args.report)  # inside atomic_dir: a failed gate leaves no features behind


if __name__ == "__main__":
    run(main)
