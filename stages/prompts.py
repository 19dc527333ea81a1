"""Stage `prompts@<dataset>`: the dataset's template bank (hand-crafted + CLIP ensembles), encoded once."""

import argparse
from pathlib import Path

import torch

from promptlab.cli import run
from promptlab.clip.model import load_clip
from promptlab.clip.text import TextEncoder
from promptlab.config import load_params
from promptlab.data.registry import DATASETS
from promptlab.io import atomic_dir, read_json, save_tensors, write_json
from promptlab.prompts.bank import ENSEMBLES, build_class_set


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    ap.add_argument("--shards", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    p = load_params()
    torch.set_grad_enabled(False)
    clip = load_clip(p.model.name, p.model.pretrained, p.model.device)
    names = read_json(Path(args.shards) / "classnames.json")
    template = DATASETS[args.dataset].template
    classes = build_class_set(TextEncoder(clip.model, clip.tokenizer), names, template)
    with atomic_dir(args.out) as tmp:
        save_tensors(Path(tmp) / "bank.safetensors", classes.tensors(),
                     {"classnames": names, "template": template, "model": p.model.name})
        write_json(Path(tmp) / "bank.json", {"classnames": names, "template": template, "ensembles": ENSEMBLES})
    print(f"prompts {args.dataset}: {len(names)} classes, template {template!r}")


if __name__ == "__main__":
    run(main)
