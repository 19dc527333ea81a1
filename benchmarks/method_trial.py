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
from promptlab.artifacts import Artifacts
from promptlab.config import load_params
from promptlab.evaluate import evaluate_run
from promptlab.methods.base import FrozenCLIP
from promptlab.report import harmonic_mean
from promptlab.runner import Training, scorer, train_run
from promptlab.runs import Run


def trial(protocol: str, name: str, cfg, clip: FrozenCLIP, seed: int, shots: int, dataset: str,
          targets: list[str]) -> str:
    art, history = Artifacts(), []
    run = Run(protocol, dataset, seed, shots, tuple(targets))
    start = time.perf_counter()
    method, classes, _ = train_run(run, name, cfg, clip, art, lambda epoch, record: history.append(record))
    took = time.perf_counter() - start
    result = evaluate_run(protocol, dataset, run.targets, len(art.class_set(dataset)),
                          scorer(Training(run.where, method, classes), art))
    if protocol == "base2new":
        b, n = result["base"]["acc"], result["new"]["acc"] if result["new"] else float("nan")
        acc = f"base {b:.2f} new {n:.2f} hm {harmonic_mean(b, n):.2f}"
    else:
        acc = " ".join(f"{t} {r['acc']:.2f}" for t, r in result["targets"].items() if r)
    last = f"train loss {history[-1]['loss']:.3f} acc {history[-1]['acc']:.1f}" if history else "untrained"
    return f"{protocol:12s} {acc} | {last} | {took:.1f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("method")
    ap.add_argument("overrides", nargs="*", help="key=value (YAML values) for the method's params block")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--domain-shift", action="store_true")
    args = ap.parse_args()
    p = load_params()
    cfg = getattr(p, args.method)
    cfg = cfg.model_validate({**cfg.model_dump(), **{k: yaml.safe_load(v) for k, v in
                                                     (o.split("=", 1) for o in args.overrides)}})
    clip = FrozenCLIP(load_clip(p.model.name, p.model.pretrained, p.model.device))
    src = p.eval.domain_shift.source
    print(args.method, " ".join(args.overrides), "seed", args.seed)
    print(trial("base2new", args.method, cfg, clip, args.seed, p.data.shots, p.data.datasets[0], []))
    if args.domain_shift:
        print(trial("domain_shift", args.method, cfg, clip, args.seed, p.data.shots, src,
                    p.eval.domain_shift.targets))


if __name__ == "__main__":
    main()
