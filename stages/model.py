"""Stage `model`: resolve model.name + model.pretrained to the checkpoint file it loads and record the file's
sha256 in models/model.json. The stages that encode with CLIP (features, prompts, run) depend on this record
instead of on a weights folder, so they re-run when the weights change and never depend on a model they do not
use (the tiny CLIP under a real model)."""

import argparse

from promptlab.cli import run
from promptlab.clip.resolve import resolve_checkpoint
from promptlab.config import load_params
from promptlab.io import write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, help="the record (JSON)")
    args = ap.parse_args()
    p = load_params()
    record = resolve_checkpoint(p.model.name, p.model.pretrained)
    write_json(args.out, record)
    print(f"model: {record['name']} {record['kind']} {record['pretrained']} sha256 {record['sha256']}")


if __name__ == "__main__":
    run(main)
