"""The evaluation protocols (DESIGN.md §5) and the glue shared by the run stage: which runs a method makes,
which samples a run trains on, saving / loading a trained prompt (its config + learned tensors only, never
CLIP), and scoring it.

    base2new       train on the base half of a dataset's classes, test on base and on new (each alone)
    domain_shift   train on the source with all its classes, test on the source and on each target (the same
                   classes in other domains), each with its own class list
    cross_dataset  the same training, tested on other datasets' own classes (a different label space)
    few_shot       all classes of a dataset, trained on K shots per class for each K of eval.few_shot.shots

domain_shift, cross_dataset and the data.shots point of few_shot train the same thing (all classes, the seed's
full draw): a run stage trains it once and evaluates the saved prompt for each (`Run.training_key`).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from promptlab.config import PROTOCOLS
from promptlab.data.coop_format import base_new_labels
from promptlab.errors import UserError
from promptlab.evaluate import count_correct, relabel
from promptlab.io import load_tensors, read_json, save_tensors, write_json
from promptlab.methods import REGISTRY
from promptlab.methods.base import FrozenCLIP, PromptMethod, TrainData
from promptlab.prompts.bank import ClassSet
from promptlab.train import train


@dataclass(frozen=True)
class Run:
    """One (protocol, dataset, seed, shots) run of a method. `dataset` is the one trained on; `targets` the
    datasets tested besides it (domain_shift, cross_dataset)."""

    protocol: str
    dataset: str
    seed: int
    shots: int
    targets: tuple[str, ...] = ()

    @property
    def where(self) -> Path:
        """Its folder under a method's outputs: protocol/dataset[/shotsK]/seedN."""
        shots = [f"shots{self.shots}"] if self.protocol == "few_shot" else []
        return Path(self.protocol, self.dataset, *shots, f"seed{self.seed}")

    def training_key(self, cfg) -> str:
        """Runs with equal keys train identically (same classes, draw and config): train once, reuse."""
        classes = "base" if self.protocol == "base2new" else "all"
        return json.dumps([self.dataset, classes, self.seed, self.shots, cfg.model_dump(mode="json")],
                          sort_keys=True)


def plan_runs(params, method: str) -> list[Run]:
    """Every run of `method` that params ask for, in a fixed order (base2new, domain_shift, cross_dataset,
    few_shot; datasets and shots as listed; seeds innermost)."""
    ev, data, runs = params.eval, params.data, []
    if "base2new" in ev.protocols:
        runs += [Run("base2new", d, s, data.shots) for d in data.datasets for s in data.seeds]
    for protocol in ("domain_shift", "cross_dataset"):
        if protocol in ev.protocols:
            spec = getattr(ev, protocol)
            runs += [Run(protocol, spec.source, s, data.shots, tuple(spec.targets)) for s in data.seeds]
    fs = ev.few_shot
    if "few_shot" in ev.protocols and (fs.methods is None or method in fs.methods):
        runs += [Run("few_shot", d, s, k) for d in fs.datasets for k in fs.shots for s in data.seeds]
    return runs


def run_config(run: Run, cfg, few_shot_epochs: dict[int, int] | None):
    """The method config of a run: few_shot runs take eval.few_shot.epochs[K] when given (methods that train in
    epochs only)."""
    if run.protocol == "few_shot" and few_shot_epochs and "epochs" in type(cfg).model_fields:
        return cfg.model_copy(update={"epochs": few_shot_epochs[run.shots]})
    return cfg


def shard_dir(dataset: str) -> Path:
    return Path("data/shards") / dataset


def feature_dir(dataset: str) -> Path:
    return Path("data/features") / dataset


def bank_dir(dataset: str) -> Path:
    return Path("data/prompts") / dataset


def load_class_set(dataset: str) -> ClassSet:
    tensors, meta = load_tensors(bank_dir(dataset) / "bank.safetensors")
    return ClassSet.from_tensors(meta["classnames"], meta["template"], tensors)


def load_split(dataset: str, split: str, patches: bool = True) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Cached features of a split; patch tokens are read only when asked for (they dominate the file)."""
    path = feature_dir(dataset) / f"{split}.safetensors"
    if not path.exists():
        raise UserError(f"{dataset}: no cached features for split '{split}' ({path})")
    tensors, meta = load_tensors(path, skip=() if patches else ("patches",))
    return tensors, meta["keys"]


def protocol_classes(protocol: str, classes: ClassSet) -> list[int]:
    """Labels a run trains on: base classes for base2new, all classes otherwise."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}")
    return base_new_labels(len(classes))[0] if protocol == "base2new" else list(range(len(classes)))


def nested_subsample(labels: torch.Tensor, shots: int, seed: int) -> torch.Tensor:
    """Positions of at most `shots` rows per class, drawn from rows that are one seed's few-shot draw: per
    class (in label order) one seeded shuffle of its rows, and the first `shots` of it. The shuffle does not
    depend on `shots`, so the K-shot sets are nested (1 ⊂ 2 ⊂ 4 ...) and the full draw is the largest."""
    rng, keep = random.Random(seed), []
    for label in sorted(set(labels.tolist())):
        rows = torch.nonzero(labels == label).flatten().tolist()
        rng.shuffle(rows)
        keep += sorted(rows[:shots])
    return torch.tensor(sorted(keep), dtype=torch.long)


def training_data(dataset: str, seed: int, keep: list[int], patches: bool = False, split: str = "train",
                  shots: int | None = None) -> TrainData:
    """The seed's few-shot draw of `split` (train: K shots, V views; val: min(K, 4) shots, 1 view), as
    recorded in fewshot.json at shard time, restricted to `keep` labels and relabelled to positions in `keep`.
    `shots` below the sharded K takes a nested subsample (train: `shots`, val: min(shots, 4) per class)."""
    fewshot = read_json(shard_dir(dataset) / "fewshot.json")
    draws = fewshot["seeds"]
    if str(seed) not in draws:
        raise UserError(f"{dataset}: seed {seed} was not sharded (have {sorted(draws)}); rerun the shard stage")
    if shots is not None and shots > fewshot["shots"]:
        raise UserError(f"{dataset}: {shots} shots asked, the shards hold {fewshot['shots']} (raise data.shots)")
    tensors, keys = load_split(dataset, split, patches)
    wanted = set(draws[str(seed)][split])
    rows = torch.tensor([i for i, k in enumerate(keys) if k in wanted], dtype=torch.long)
    mask, labels = relabel(tensors["labels"][rows], keep)
    rows = rows[mask]
    if shots is not None and shots < fewshot["shots"]:
        pick = nested_subsample(labels, shots if split == "train" else min(shots, 4), seed)
        rows, labels = rows[pick], labels[pick]
    patches = tensors["patches"][rows] if "patches" in tensors else None
    return TrainData(tensors["global"][rows], labels, patches)


def build_method(name: str, cfg, clip: FrozenCLIP, classes: ClassSet, seed: int) -> PromptMethod:
    torch.manual_seed(seed)  # random inits (e.g. CoOp's N(0, 0.02²) context) follow the run seed
    return REGISTRY[name](cfg, clip, classes)


def save_method(out_dir: Path, method: PromptMethod, classes: ClassSet, info: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    save_tensors(out_dir / "prompt.safetensors", method.learned_state())
    write_json(out_dir / "prompt.json", {"method": method.name, "config": method.cfg.model_dump(),
                                         "train_classnames": classes.names, "template": classes.template, **info})


def load_method(run_dir: Path, clip: FrozenCLIP, classes: ClassSet) -> PromptMethod:
    """Rebuild a trained method from its prompt.json + prompt.safetensors (weights only, no pickle)."""
    info = read_json(run_dir / "prompt.json")
    cls = REGISTRY[info["method"]]
    train_classes = ClassSet(info["train_classnames"], info["template"], classes.hand_features[:0])
    method = cls(cls.Config(**info["config"]), clip, train_classes)
    tensors, _ = load_tensors(run_dir / "prompt.safetensors")
    method.load_state_dict(tensors)
    return method.eval()


def score(method_dir: Path, clip: FrozenCLIP, classes: ClassSet, test: dict[str, torch.Tensor],
          keep: list[int] | None = None) -> dict:
    """Accuracy of a saved prompt on cached test features (view 0), optionally on the `keep` classes only
    (relabelled, scored against just those classes, as CoOp's base/new evaluation does)."""
    labels, feats = test["labels"], test["global"][:, 0]
    if keep is not None:
        mask, labels = relabel(labels, keep)
        feats, classes = feats[mask], classes.subset(keep)
    method = load_method(method_dir, clip, classes)
    return count_correct(method, feats, labels, classes)


@torch.no_grad()
def evaluate_run(run: Run, method_dir: Path, clip: FrozenCLIP, memo: dict | None = None,
                 trained_in: Path | None = None) -> dict:
    """base2new: {"base": counts, "new": counts} ("new": null for a method that cannot score classes it was
    not trained on, e.g. the linear probe); domain_shift / cross_dataset: {"targets": {dataset id: counts}}
    including the source itself, each scored with its own class list (null for such a method when the target
    has classes it was not trained on); few_shot: {"test": counts} on all the dataset's classes.

    memo (with trained_in, the run folder that holds the training) keeps each (training, test set, classes)
    score for the next run that asks for it: domain shift, cross-dataset and the full-shot few-shot point share
    one training and all score the source's test split, which for CoCoOp (a text-encoder pass per image and
    class) is a large share of the stage's time."""
    info = read_json(method_dir / "prompt.json")
    open_vocabulary = REGISTRY[info["method"]].open_vocabulary
    memo = {} if memo is None else memo

    def scored(dataset: str, keep: list[int] | None = None) -> dict:
        key = (str(trained_in or method_dir), dataset, None if keep is None else tuple(keep))
        if key not in memo:
            test = load_split(dataset, "test", patches=False)[0]
            memo[key] = score(method_dir, clip, load_class_set(dataset), test, keep)
        return memo[key]

    if run.protocol == "base2new":
        base, new = base_new_labels(len(load_class_set(run.dataset)))
        return {"base": scored(run.dataset, base), "new": scored(run.dataset, new) if open_vocabulary else None}
    if run.protocol == "few_shot":
        return {"test": scored(run.dataset)}
    trained = set(info["train_classnames"])
    return {"targets": {t: scored(t) if open_vocabulary or set(read_json(shard_dir(t) / "classnames.json")) <= trained
                        else None for t in [run.dataset, *run.targets]}}


def checkpoint_path(run: Run, name: str, cfg) -> Path:
    """Where an interrupted run's per-epoch checkpoint waits for the next attempt: outside every DVC output
    (DVC clears outputs before re-running a stage), keyed by everything that determines the training, so a
    checkpoint is never resumed under different params or features."""
    features = feature_dir(run.dataset) / "train.safetensors"
    stat = features.stat() if features.exists() else None
    key = json.dumps([run.training_key(cfg), name, [stat.st_size, stat.st_mtime_ns] if stat else None])
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return Path("data/checkpoints") / f"{run.protocol}-{run.dataset}-{name}-seed{run.seed}-{digest}.safetensors"


def train_run(run: Run, name: str, cfg, clip: FrozenCLIP, out_dir: Path, log: Callable[[int, dict], None]) -> None:
    """Train `name` on the run's draw (base classes for base2new, all classes otherwise; `run.shots` per
    class) and save the learned prompt in out_dir."""
    all_classes = load_class_set(run.dataset)
    keep = protocol_classes(run.protocol, all_classes)
    classes = all_classes.subset(keep)
    method = build_method(name, cfg, clip, classes, run.seed)
    data = training_data(run.dataset, run.seed, keep, method.needs_patches, shots=run.shots)  # patches: if used
    if method.trainable:
        val = training_data(run.dataset, run.seed, keep, split="val", shots=run.shots) if method.own_solver else None
        ckpt = checkpoint_path(run, name, cfg)
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        train(method, data, classes, cfg, seed=run.seed, checkpoint=ckpt, on_epoch=log, val=val)
        ckpt.unlink(missing_ok=True)
    else:  # nothing to train: log its accuracy on the training shots once, for the curves' baseline
        log(0, {"loss": 0.0, "lr": 0.0, "acc": count_correct(method, data.features[:, 0], data.labels, classes)["acc"]})
    save_method(out_dir, method, classes, {"protocol": run.protocol, "dataset": run.dataset, "seed": run.seed,
                                           "shots": run.shots, "n_train": int(len(data.labels))})


def run_record(run: Run, name: str, trained_in: Path, result: dict) -> dict:
    """The run's metrics record (metrics/runs/<method>/<where>.json); `trained_in` names the run whose
    training it evaluates (itself unless reused)."""
    shots = {"shots": run.shots} if run.protocol == "few_shot" else {}
    return {"protocol": run.protocol, "dataset": run.dataset, "method": name, "seed": run.seed, **shots,
            "trained_in": trained_in.as_posix(), **result}
