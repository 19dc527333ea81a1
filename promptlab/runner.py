"""Every run of one method, top to bottom (the run stage's body; docs/protocols.md):

    group the runs that params ask for (runs.plan_runs) by training: runs with equal training_key share one
    for each group, in worker processes (one CPU thread each, largest training first):
        train the group's training once, save its prompt in the first run's folder
        score it for every run of the group (evaluate.evaluate_run); each (test set, classes) scored once
    in plan order: copy the prompt into the other runs' folders, write DVCLive curves and metrics records

Why processes and one thread each: the runs' trainings are independent, and a prompt-learning step is hundreds
of small ops (a 4-block text tower over a few hundred tokens) that a second torch thread speeds up 1.6x, a
second process 2x (a CoOp step on 48 classes: 26.4 ms on one thread, 16.8 ms on two; BENCHMARKS.md). A training's numbers depend on its thread count, never on which process ran it or
in which order, so the outputs are the same for every worker count (tests/test_runner.py checks 1 vs 2).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from promptlab.artifacts import Artifacts, protocol_classes
from promptlab.environment import environment
from promptlab.data.pixels import PixelSource, pixel_test_split
from promptlab.evaluate import count_correct, evaluate_run, feature_batches, relabel, score_batches
from promptlab.io import write_json
from promptlab.methods import method_class
from promptlab.methods.base import FrozenCLIP, PromptMethod, TrainData
from promptlab.prompts.bank import ClassSet
from promptlab.runs import Run, plan_runs, run_config
from promptlab.saved_prompt import save_prompt
from promptlab.train import FeatureSource, train


@dataclass
class Training:
    """One trained method, where its prompt was saved, and its scores so far (shared by the runs reusing it)."""

    where: Path
    method: PromptMethod
    classes: ClassSet  # the classes it was trained on
    scores: dict = field(default_factory=dict)


def build_method(name: str, cfg, clip: FrozenCLIP, classes, seed: int) -> PromptMethod:
    torch.manual_seed(seed)  # random inits (e.g. CoOp's N(0, 0.02²) context) follow the run seed
    return method_class(name)(cfg, clip, classes).to(clip.device)


def checkpoint_path(art: Artifacts, run: Run, name: str, cfg) -> Path:
    """Where an interrupted run's per-epoch checkpoint waits for the next attempt: outside every DVC output
    (DVC clears outputs before re-running a stage), keyed by everything that determines the training, so a
    checkpoint is never resumed under different params or features."""
    features = art.features / run.dataset / "train.safetensors"
    stat = features.stat() if features.exists() else None
    key = json.dumps([run.training_key(cfg), name, [stat.st_size, stat.st_mtime_ns] if stat else None])
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return Path("data/checkpoints") / f"{run.protocol}-{run.dataset}-{name}-seed{run.seed}-{digest}.safetensors"


def training_source(method: PromptMethod, art: Artifacts, run: Run, keep: list[int], cfg):
    """(data for prepare/fit, batch source) of a run's training shots, by what the method trains on: cached
    features, or (inputs = "pixels") the same draw's images from the shards, augmented per epoch."""
    batch_size = getattr(cfg, "batch_size", 1)
    if method.inputs == "pixels":
        keys, labels = art.training_keys(run.dataset, run.seed, keep, shots=run.shots)
        source = PixelSource(method.clip.loaded, art.shards / run.dataset, keys, labels.tolist(), batch_size,
                             run.seed, art.pixels)
        return TrainData(torch.empty(len(labels), 0, 0), labels), source  # no cached features: labels only
    data = art.training_data(run.dataset, run.seed, keep, method.needs_patches, shots=run.shots)
    return data, FeatureSource(data, batch_size, run.seed, method.needs_patches)


def test_batches(method: PromptMethod, art: Artifacts, dataset: str, keep: list[int] | None):
    """A dataset's test split as batches (view 0 of the cached features, or pixels with the model's test
    preprocessing for pixel methods), restricted to `keep` labels."""
    if method.inputs == "pixels":
        return pixel_test_split(method.clip.loaded, art.shards / dataset, keep, art.pixels)
    test = art.split(dataset, "test", patches=False)[0]
    labels, feats = test["labels"], test["global"][:, 0]
    if keep is not None:
        mask, labels = relabel(labels, keep)
        feats = feats[mask]
    return feature_batches(feats, labels)


def train_run(run: Run, name: str, cfg, clip: FrozenCLIP, art: Artifacts, log: Callable[[int, dict], None]
              ) -> tuple[PromptMethod, ClassSet, int]:
    """Train `name` on the run's draw (base classes for base2new, all classes otherwise; `run.shots` per
    class); returns (the trained method in eval mode, its training classes, the number of training images)."""
    all_classes = art.class_set(run.dataset)
    keep = protocol_classes(run.trains_on_base, len(all_classes))
    classes = all_classes.subset(keep)
    method = build_method(name, cfg, clip, classes, run.seed)
    data, source = training_source(method, art, run, keep, cfg)
    if method.trainable:
        val = art.training_data(run.dataset, run.seed, keep, split="val", shots=run.shots) if method.own_solver \
            else None
        ckpt = checkpoint_path(art, run, name, cfg)
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        train(method, data, classes, cfg, seed=run.seed, checkpoint=ckpt, on_epoch=log, val=val, source=source)
        ckpt.unlink(missing_ok=True)
    else:  # nothing to train: log its accuracy on the training shots once, for the curves' baseline
        log(0, {"loss": 0.0, "lr": 0.0, "acc": count_correct(method, data.features[:, 0], data.labels, classes)["acc"]})
    return method.eval(), classes, int(len(data.labels))


def scorer(training: Training, art: Artifacts) -> Callable[[str, list[int] | None], dict | None]:
    """score(test dataset, kept labels) for one training: each (dataset, classes) computed once; None when
    the method is closed-vocabulary and the classes are not ones it was trained on."""
    method, trained = training.method, set(training.classes.names)

    def score(dataset: str, keep: list[int] | None) -> dict | None:
        key = (dataset, None if keep is None else tuple(keep))
        if key not in training.scores:
            classes = art.class_set(dataset)
            classes = classes.subset(keep) if keep is not None else classes
            if not method.open_vocabulary and not set(classes.names) <= trained:
                training.scores[key] = None
            else:
                training.scores[key] = score_batches(method, test_batches(method, art, dataset, keep), classes)
        return training.scores[key]

    return score


@dataclass
class Group:
    """The runs sharing one training (plan order; runs[0] trains and holds the prompt) and their config."""

    runs: list[Run]
    cfg: object

    def cost(self, art: Artifacts) -> float:
        """A rough size of the training, to start the largest first (the order decides speed, not results)."""
        run = self.runs[0]
        n_classes = len(art.class_set(run.dataset))
        classes = len(protocol_classes(run.trains_on_base, n_classes))
        return float(getattr(self.cfg, "epochs", 1)) * run.shots * classes * classes


def plan_groups(params, name: str) -> list[Group]:
    """The method's runs grouped by training_key, groups in the order of their first run."""
    groups: dict[str, Group] = {}
    for run in plan_runs(params, name):
        cfg = run_config(run, getattr(params, name), params.eval.few_shot.epochs)
        groups.setdefault(run.training_key(cfg), Group([], cfg)).runs.append(run)
    return list(groups.values())


@dataclass
class GroupResult:
    history: list[dict]  # per-epoch training records of the one training (DVCLive curves)
    results: list[dict]  # evaluate_run's result per run of the group, in its order


# What a worker needs besides its Group: set once in the parent, inherited by the forked workers.
_CONTEXT: dict = {}


def train_group(group: Group) -> GroupResult:
    """Train a group's training once, save its prompt under the first run's folder, score every run."""
    name, clip, art, out = (_CONTEXT[k] for k in ("name", "clip", "art", "out"))
    first, history = group.runs[0], []
    method, classes, n_train = train_run(first, name, group.cfg, clip, art,
                                         lambda epoch, record: history.append(record))
    save_prompt(out / first.where, method, classes, {"protocol": first.protocol, "dataset": first.dataset,
                                                     "seed": first.seed, "shots": first.shots, "n_train": n_train})
    score = scorer(Training(first.where, method, classes), art)
    results = [evaluate_run(run.protocol, run.dataset, run.targets, len(art.class_set(run.dataset)), score)
               for run in group.runs]
    return GroupResult(history, results)


def worker_count(clip: FrozenCLIP, n_groups: int) -> int:
    """One process per CPU this process may use (at most one per group) on Linux; 1 on an accelerator (a single
    process keeps the device busy, and CUDA cannot be forked) and on other systems, where forking a process
    that has loaded torch is not safe (macOS). The count changes the speed, never the outputs."""
    if clip.device.type != "cpu" or not hasattr(os, "sched_getaffinity"):
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), n_groups))


def train_groups(groups: list[Group], workers: int) -> list[GroupResult]:
    """train_group for every group, in `workers` forked processes (in this one for 1); results in group order."""
    if workers == 1:
        return [train_group(g) for g in groups]
    order = sorted(range(len(groups)), key=lambda i: -groups[i].cost(_CONTEXT["art"]))
    # fork: the workers inherit the loaded CLIP and artifacts (no re-import, no re-load). What breaks after a
    # fork is entering an OpenMP parallel region; the workers inherit one torch thread and never enter one.
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        done = pool.map(train_group, [groups[i] for i in order], chunksize=1)
    results: list[GroupResult | None] = [None] * len(groups)
    for i, result in zip(order, done):
        results[i] = result
    return results


def run_method(params, name: str, clip: FrozenCLIP, art: Artifacts, out: Path, metrics: Path, curves: Path,
               workers: int | None = None) -> None:
    """Every run of `name`: prompts under `out`, metrics records under `metrics`, DVCLive curves under `curves`
    (each run in its `Run.where` folder). `workers`: processes training at once (default worker_count)."""
    from dvclive import Live

    groups = plan_groups(params, name)
    if clip.device.type == "cpu":
        torch.set_num_threads(1)  # in this process and the workers it forks (module docstring)
    workers = workers or worker_count(clip, len(groups))
    _CONTEXT.update(name=name, clip=clip, art=art, out=out)
    try:
        done = train_groups(groups, workers)
    finally:
        _CONTEXT.clear()
    machine = environment(str(clip.device))  # recorded with every run: results from other hardware show
    for group, result in zip(groups, done):
        first = group.runs[0]
        with Live(dir=str(curves / first.where), save_dvc_exp=False, dvcyaml=None, report=None) as live:
            for record in result.history:
                for k in ("loss", "acc", "lr"):
                    live.log_metric(f"train/{k}", record[k])
                live.next_step()
        for run, res in zip(group.runs, result.results):
            if run is not first:
                shutil.copytree(out / first.where, out / run.where)  # every run folder holds its prompt
            write_json(metrics / f"{run.where}.json", {**run_record(run, name, first.where, res),
                                                        "environment": machine})
            accs = res.get("targets") or res
            print(f"{run.where} {name}: " + ", ".join(f"{k} {v['acc']:.2f}" for k, v in accs.items() if v))


def run_record(run: Run, name: str, trained_in: Path, result: dict) -> dict:
    """The run's metrics record (metrics/runs/<method>/<where>.json); `trained_in` names the run whose
    training it evaluates (itself unless reused)."""
    shots = {"shots": run.shots} if run.protocol == "few_shot" else {}
    return {"protocol": run.protocol, "dataset": run.dataset, "method": name, "seed": run.seed, **shots,
            "trained_in": trained_in.as_posix(), **result}
