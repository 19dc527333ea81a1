"""Stage `features@<dataset>`: encode every sharded image once (V augmented views for train) with the frozen
image tower; writes projected global + patch features per split (fp16 safetensors), each validated against
the manifest (great-expectations; report in --report). features.nproc > 1 runs it as that many torchrun
processes, each encoding a share of the shards, merged into byte-identical files (promptlab/clip/parallel.py)."""

import argparse
import sys
from pathlib import Path

import torch

from promptlab.cli import run
from promptlab.clip import parallel
from promptlab.clip.extract import extract_split, rank_shards
from promptlab.clip.model import load_clip
from promptlab.config import load_params
from promptlab.data.shards import read_manifest
from promptlab.io import atomic_dir, read_json, save_tensors
from promptlab.validate import gate, validate_features

SPLITS = ("train", "val", "test")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shards", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--report", required=True, help="validation report (JSON)")
    args = ap.parse_args()
    p = load_params()
    if p.features.nproc > 1 and not torch.distributed.is_torchelastic_launched():
        raise SystemExit(parallel.relaunch(p.features.nproc))
    ranks = parallel.start()
    torch.set_grad_enabled(False)
    clip = load_clip(p.model.name, p.model.pretrained, ranks.device(p.model.device))
    manifest = read_manifest(args.shards)
    expected = {s: manifest.filter(manifest["split"] == s)["key"].to_list() for s in SPLITS}
    parts = parallel.parts_dir(args.out)
    if ranks.world > 1:
        if ranks.main:
            parallel.clear(parts)  # a killed run's leftovers
        ranks.barrier()
    encoded = {}
    for split in (s for s in SPLITS if expected[s]):
        n_views = p.features.train_views if split == "train" else 1
        shards = rank_shards(args.shards, split)
        total = manifest.filter(manifest["shard"].is_in([Path(t).name for t in shards])).height  # this rank's
        tensors, keys = extract_split(clip, args.shards, split, n_views=n_views, seed=p.features.seed,
                                      crop_scale_min=p.features.crop_scale_min, batch_size=p.features.batch_size,
                                      patches=p.features.patches, num_workers=p.features.num_workers,
                                      precision=p.features.precision, total=total,
                                      log=lambda line: print(line, file=sys.stderr), shards=shards)
        if ranks.world > 1:
            parallel.write_part(parts, split, ranks, tensors, keys)
        encoded[split] = tensors, keys
    ranks.barrier()  # every part written
    if ranks.world > 1 and ranks.main:
        encoded = {s: parallel.merge_parts(parts, s, expected[s]) for s in encoded}
        parallel.clear(parts)
    if ranks.main:
        write_features(p, args, encoded, expected, clip.model.visual.output_dim)
    parallel.stop(ranks)


def write_features(p, args, encoded: dict, expected: dict, dim: int) -> None:
    """Validate each split's features against the manifest and write them, all or nothing."""
    n_classes = len(read_json(Path(args.shards) / "classnames.json"))
    reports = []
    with atomic_dir(args.out) as tmp:
        for split, (tensors, keys) in encoded.items():
            reports.append(validate_features(tensors, keys, expected[split], n_classes, dim,
                                             name=f"features:{Path(args.out).name}/{split}"))
            save_tensors(Path(tmp) / f"{split}.safetensors", tensors,
                         {"keys": keys, "model": p.model.name, "pretrained": p.model.pretrained})
            print(f"features {split}: {tuple(tensors['global'].shape)}")
        gate(reports, args.report)  # inside atomic_dir: a failed gate leaves no features behind


if __name__ == "__main__":
    run(main)
