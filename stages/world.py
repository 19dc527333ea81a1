"""Stage `world`: build the embedded synthetic world as CoOp-format dataset folders under data.root."""

import argparse

from promptlab.cli import run
from promptlab.clip.model import check_model_early
from promptlab.config import load_params
from promptlab.io import atomic_dir, write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    p = load_params()
    check_model_early(p)
    from promptlab.data.synthetic import write_world

    w = p.world
    with atomic_dir(args.out) as tmp:
        summary = write_world(tmp, seed=w.seed, image_size=w.image_size, train_per_class=w.train_per_class,
                              val_per_class=w.val_per_class, test_per_class=w.test_per_class,
                              shifted_domains=w.shifted_domains, class_shades=w.class_shades)
        write_json(tmp / "world.json", summary)
    print(f"world: {summary}")


if __name__ == "__main__":
    run(main)
