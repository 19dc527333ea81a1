"""Stage `pretrain`: train the project's tiny CLIP contrastively on captioned synthetic images; save it as an
ordinary open_clip checkpoint and report its zero-shot accuracy per domain."""

import argparse
from pathlib import Path

from promptlab.cli import run
from promptlab.clip.model import check_model_early
from promptlab.clip.pretrain import pretrain, save_checkpoint, zero_shot_report
from promptlab.config import load_params
from promptlab.environment import environment
from promptlab.io import atomic_dir, write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, help="directory for open_clip_model.safetensors")
    ap.add_argument("--metrics", required=True)
    args = ap.parse_args()
    p = load_params()
    check_model_early(p)
    shades = p.world.class_shades
    model = pretrain(p.pretrain.model, p.pretrain, p.world.image_size, shades=shades)
    report = zero_shot_report(model, p.pretrain.model, p.pretrain.seed, p.pretrain.eval_per_class,
                              p.world.image_size, ["photo", *p.world.shifted_domains], shades=shades)
    with atomic_dir(args.out) as tmp:
        save_checkpoint(model, Path(tmp) / "open_clip_model.safetensors")
    write_json(args.metrics, {"zero_shot": report, "environment": environment("cpu")})  # pretraining runs on CPU
    print(report)


if __name__ == "__main__":
    run(main)
