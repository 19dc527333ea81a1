"""Quick trial of one method on the default world's cached features (needs a prior `dvc repro` up to the
features/prompts stages): trains on one seed's base-to-new draw (and optionally the domain-shift source) and
prints base / new / HM (and target accuracies). For choosing a method's defaults, not for reported numbers.

    uv run python benchmarks/method_trial.py coop lr=0.01 epochs=10 [--seed 1] [--domain-shift]
"""

import argparse
import time

import torch
import yaml

from promptlab.clip.model import load_clip
from promptlab.config import load_params
from promptlab.report import harmonic_mean
from promptlab.methods.base import FrozenCLIP
from promptlab.protocols import (build_method, load_class_set, load_split, protocol_classes, score,
                                 training_data, save_method)
from promptlab.train import train
from promptlab.data.coop_format import base_new_labels


def trial(protocol: str, name: str, cfg, clip: FrozenCLIP, seed: int, dataset: str, targets: list[str],
          out: str) -> str:
    from pathlib import Path

    all_classes = load_class_set(dataset)
    keep = protocol_classes(protocol, all_classes)
    classes = all_classes.subset(keep)
    method = build_method(name, cfg, clip, classes, seed)
    data = training_data(dataset, seed, keep, method.needs_patches)
    val = training_data(dataset, seed, keep, split="val")
    start = time.perf_counter()
    history = train(method, data, classes, cfg, seed=seed, val=val) if method.trainable else []
    took = time.perf_counter() - start
    save_method(Path(out), method, classes, {})
    with torch.no_grad():
        if protocol == "base2new":
            test, _ = load_split(dataset, "test", False)
            base, new = base_new_labels(len(all_classes))
            b = score(Path(out), clip, all_classes, test, base)["acc"]
            n = score(Path(out), clip, all_classes, test, new)["acc"] if method.open_vocabulary else float("nan")
            acc = f"base {b:.2f} new {n:.2f} hm {harmonic_mean(b, n):.2f}"
        else:
            acc = " ".join(f"{t} {score(Path(out), clip, load_class_set(t), load_split(t, 'test', False)[0])['acc']:.2f}"
                           for t in [dataset, *targets])
    last = f"train loss {history[-1]['loss']:.3f} acc {history[-1]['acc']:.1f}" if history else "untrained"
    return f"{protocol:12s} {acc} | {last} | {took:.1f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("method")
    ap.add_argument("overrides", nargs="*", help="key=value (YAML values) for the method's params block")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--domain-shift", action="store_true")
    ap.add_argument("--out", default="/tmp/method_trial")
    args = ap.parse_args()
    p = load_params()
    cfg = getattr(p, args.method)
    cfg = cfg.model_validate({**cfg.model_dump(), **{k: yaml.safe_load(v) for k, v in
                                                     (o.split("=", 1) for o in args.overrides)}})
    clip = FrozenCLIP(load_clip(p.model.name, p.model.pretrained, p.model.device))
    src = p.eval.domain_shift.source
    print(args.method, " ".join(args.overrides), "seed", args.seed)
    print(trial("base2new", args.method, cfg, clip, args.seed, p.data.datasets[0], [], args.out))
    if args.domain_shift:
        print(trial("domain_shift", args.method, cfg, clip, args.seed, src, p.eval.domain_shift.targets, args.out))


if __name__ == "__main__":
    main()
