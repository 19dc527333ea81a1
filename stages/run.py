"""Stage `base2new@<dataset>-<method>-<seed>` / `domain_shift@<method>-<seed>`: train one method on one seed's
few-shot draw from cached features, save the learned prompt, log per-epoch curves (DVCLive), then evaluate it:
base and new test classes (base2new), or the source and every target domain (domain_shift)."""

import argparse
from pathlib import Path

import torch

from promptlab.cli import run
from promptlab.clip.model import load_clip
from promptlab.config import load_params
from promptlab.evaluate import count_correct
from promptlab.io import atomic_dir, write_json
from promptlab.methods import REGISTRY
from promptlab.methods.base import FrozenCLIP
from promptlab.protocols import (PROTOCOLS, build_method, evaluate_run, load_class_set, protocol_classes,
                                 save_method, training_data)
from promptlab.train import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--protocol", required=True, choices=PROTOCOLS)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--method", required=True, choices=sorted(REGISTRY))
    ap.add_argument("--seed", required=True, type=int)
    ap.add_argument("--out", required=True, help="directory for the learned prompt")
    ap.add_argument("--metrics", required=True, help="run metrics JSON (accuracies and raw counts)")
    ap.add_argument("--curves", required=True, help="DVCLive directory for per-epoch curves")
    args = ap.parse_args()
    p = load_params()
    cfg = getattr(p, args.method)
    clip = FrozenCLIP(load_clip(p.model.name, p.model.pretrained, p.model.device))
    all_classes = load_class_set(args.dataset)
    keep = protocol_classes(args.protocol, all_classes)
    classes = all_classes.subset(keep)
    patches = REGISTRY[args.method].needs_patches  # patch tokens are large: read them only when used
    data = training_data(args.dataset, args.seed, keep, patches)
    method = build_method(args.method, cfg, clip, classes, args.seed)

    from dvclive import Live

    with atomic_dir(args.out) as out, Live(dir=args.curves, save_dvc_exp=False, dvcyaml=None, report=None) as live:
        def log(epoch: int, record: dict) -> None:
            for k in ("loss", "acc", "lr"):
                live.log_metric(f"train/{k}", record[k])
            live.next_step()

        if method.trainable:
            ckpt = Path(out) / "checkpoint.safetensors"
            train(method, data, classes, cfg, seed=args.seed, checkpoint=ckpt, on_epoch=log)
            ckpt.unlink()
        else:  # nothing to train: log its accuracy on the training shots once, for the curves' baseline
            with torch.no_grad():
                log(0, {"loss": 0.0, "acc": count_correct(method, data.features[:, 0], data.labels, classes)["acc"],
                        "lr": 0.0})
        save_method(Path(out), method, classes, {"protocol": args.protocol, "dataset": args.dataset,
                                                 "seed": args.seed, "n_train": int(len(data.labels))})
        with torch.no_grad():
            result = evaluate_run(args.protocol, args.dataset, Path(out), clip, p.eval.domain_shift.targets,
                                  patches)
    write_json(args.metrics, {"protocol": args.protocol, "dataset": args.dataset, "method": args.method,
                              "seed": args.seed, **result})
    print(f"{args.protocol} {args.dataset} {args.method} seed {args.seed}: {result}")


if __name__ == "__main__":
    run(main)
