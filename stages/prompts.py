"""Stage `prompts@<dataset>`: the dataset's prompt bank (hand-crafted template, CLIP's ensembles, the user's
template lists in prompts.templates, and the description bank written by the descriptions stage), encoded once
with the frozen text encoder."""

import argparse
from pathlib import Path

import torch

from promptlab.cli import run
from promptlab.clip.model import load_clip
from promptlab.clip.text import TextEncoder
from promptlab.config import load_params
from promptlab.data.registry import dataset_spec
from promptlab.io import atomic_dir, read_json, save_tensors, write_json
from promptlab.prompts.bank import ENSEMBLES, build_class_set
from promptlab.prompts.descriptions import TEXT_BANK_FILE, read_text_bank
from promptlab.validate import gate, validate_bank


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", required=True, help="a datasets.yaml or data.custom_datasets id")
    ap.add_argument("--shards", required=True)
    ap.add_argument("--descriptions", required=True, help="the descriptions stage's output folder")
    ap.add_argument("--out", required=True)
    ap.add_argument("--report", required=True, help="validation report (JSON)")
    args = ap.parse_args()
    p = load_params()
    torch.set_grad_enabled(False)
    names = read_json(Path(args.shards) / "classnames.json")
    text_bank = read_text_bank(args.descriptions, names)
    clip = load_clip(p.model.name, p.model.pretrained, p.model.device)
    template = dataset_spec(args.dataset).template
    classes = build_class_set(TextEncoder(clip.model, clip.tokenizer), names, template,
                              descriptions=text_bank.sentences, extra_ensembles=p.prompts.templates)
    gate(validate_bank(classes, p.prompts.min_descriptions, name=f"prompts:{args.dataset}"), args.report)
    with atomic_dir(args.out) as tmp:
        save_tensors(Path(tmp) / "bank.safetensors", classes.tensors(),
                     {"classnames": names, "template": template, "model": p.model.name})
        doc = text_bank.document()
        write_json(Path(tmp) / "bank.json", {
            "classnames": names, "template": template, "ensembles": {**ENSEMBLES, **p.prompts.templates},
            "descriptions": None if text_bank.sentences is None else {
                "file": str(Path(args.descriptions) / TEXT_BANK_FILE), "counts": doc["counts"],
                "source": doc["source"]}})
    print(f"prompts {args.dataset}: {len(names)} classes, template {template!r}, "
          f"ensembles {', '.join(classes.ensembles)}")


if __name__ == "__main__":
    run(main)
