"""Stage `run@<method>`: every run of one method that params ask for (protocols.plan_runs): base-to-new per
dataset and seed, domain shift and cross-dataset transfer from their source per seed, few-shot curves per
dataset, shot count and seed. Each run trains on its few-shot draw from cached features, saves the learned
prompt, logs per-epoch curves (DVCLive) and is evaluated; a run whose training equals an earlier run's (the
all-class source training shared by domain shift, cross-dataset and the full-shot few-shot point) reuses it.

One stage per method keeps `dvc exp run -S coop.lr=…` re-running only that method, and pays the ~10 s of
`import torch, open_clip` once per method instead of once per run."""

import argparse
import shutil
from pathlib import Path

from promptlab.cli import run
from promptlab.clip.model import load_clip
from promptlab.config import load_params
from promptlab.io import atomic_dir, write_json
from promptlab.methods import REGISTRY
from promptlab.methods.base import FrozenCLIP
from promptlab.protocols import evaluate_run, plan_runs, run_config, run_record, train_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--method", required=True, choices=sorted(REGISTRY))
    ap.add_argument("--out", required=True, help="directory for the learned prompts")
    ap.add_argument("--metrics", required=True, help="directory for per-run metrics JSON (accuracies, counts)")
    ap.add_argument("--curves", required=True, help="directory for per-run DVCLive curves")
    args = ap.parse_args()
    p = load_params()
    clip = FrozenCLIP(load_clip(p.model.name, p.model.pretrained, p.model.device))

    from dvclive import Live

    trained: dict[str, Path] = {}  # training key -> the run folder (relative) that holds that training
    scores: dict = {}  # (training, test set, classes) -> counts, shared by the runs of one training
    with atomic_dir(args.out) as out, atomic_dir(args.metrics) as metrics, atomic_dir(args.curves) as curves:
        for r in plan_runs(p, args.method):
            cfg = run_config(r, getattr(p, args.method), p.eval.few_shot.epochs)
            key = r.training_key(cfg)
            if key in trained:
                shutil.copytree(out / trained[key], out / r.where)
            else:
                with Live(dir=str(curves / r.where), save_dvc_exp=False, dvcyaml=None, report=None) as live:
                    def log(epoch: int, record: dict) -> None:
                        for k in ("loss", "acc", "lr"):
                            live.log_metric(f"train/{k}", record[k])
                        live.next_step()

                    train_run(r, args.method, cfg, clip, out / r.where, log)
                trained[key] = r.where
            result = evaluate_run(r, out / r.where, clip, memo=scores, trained_in=trained[key])
            write_json(metrics / f"{r.where}.json", run_record(r, args.method, trained[key], result))
            accs = result.get("targets") or result
            print(f"{r.where} {args.method}: " + ", ".join(f"{k} {v['acc']:.2f}" for k, v in accs.items() if v))


if __name__ == "__main__":
    run(main)
