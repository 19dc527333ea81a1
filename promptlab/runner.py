"""Every run of one method, top to bottom (the run stage's body; docs/protocols.md):

    for each run that params ask for (runs.plan_runs):
        training = the run's training, trained now or reused from an earlier run with the same training_key
        result   = the run's scores of that training (evaluate.evaluate_run); each (test set, classes) is
                   scored once per training
        write the run's prompt folder, DVCLive curves and metrics record

A trained method stays in memory for every run that shares it: nothing is re-read from disk.
"""

from __future__ import annotations

import hashlib
import json
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


def run_method(params, name: str, clip: FrozenCLIP, art: Artifacts, out: Path, metrics: Path, curves: Path) -> None:
    """Every run of `name`: prompts under `out`, metrics records under `metrics`, DVCLive curves under `curves`
    (each run in its `Run.where` folder)."""
    from dvclive import Live

    trainings: dict[str, Training] = {}  # training key -> the one training all runs with that key share
    machine = environment(str(clip.device))  # recorded with every run: results from other hardware show
    for run in plan_runs(params, name):
        cfg = run_config(run, getattr(params, name), params.eval.few_shot.epochs)
        key = run.training_key(cfg)
        if key in trainings:
            shutil.copytree(out / trainings[key].where, out / run.where)  # every run folder holds its prompt
        else:
            with Live(dir=str(curves / run.where), save_dvc_exp=False, dvcyaml=None, report=None) as live:
                def log(epoch: int, record: dict) -> None:
                    for k in ("loss", "acc", "lr"):
                        live.log_metric(f"train/{k}", record[k])
                    live.next_step()

                method, classes, n_train = train_run(run, name, cfg, clip, art, log)
            save_prompt(out / run.where, method, classes, {"protocol": run.protocol, "dataset": run.dataset,
                                                           "seed": run.seed, "shots": run.shots, "n_train": n_train})
            trainings[key] = Training(run.where, method, classes)
        training = trainings[key]
        result = evaluate_run(run.protocol, run.dataset, run.targets, len(art.class_set(run.dataset)),
                              scorer(training, art))
        write_json(metrics / f"{run.where}.json", {**run_record(run, name, training.where, result),
                                                    "environment": machine})
        accs = result.get("targets") or result
        print(f"{run.where} {name}: " + ", ".join(f"{k} {v['acc']:.2f}" for k, v in accs.items() if v))


def run_record(run: Run, name: str, trained_in: Path, result: dict) -> dict:
    """The run's metrics record (metrics/runs/<method>/<where>.json); `trained_in` names the run whose
    training it evaluates (itself unless reused)."""
    shots = {"shots": run.shots} if run.protocol == "few_shot" else {}
    return {"protocol": run.protocol, "dataset": run.dataset, "method": name, "seed": run.seed, **shots,
            "trained_in": trained_in.as_posix(), **result}
