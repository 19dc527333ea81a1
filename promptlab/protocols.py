"""Glue shared by the train and evaluate stages: where things live, which samples a run uses, and saving /
loading a trained prompt (its config + learned tensors only, never CLIP)."""

from __future__ import annotations

from pathlib import Path

import torch

from promptlab.data.coop_format import base_new_labels
from promptlab.errors import UserError
from promptlab.evaluate import relabel
from promptlab.io import load_tensors, read_json, save_tensors, write_json
from promptlab.methods import REGISTRY
from promptlab.methods.base import FrozenCLIP, PromptMethod
from promptlab.prompts.bank import ClassSet
from promptlab.train import TrainData

PROTOCOLS = ("base2new", "domain_shift")


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
    return base_new_labels(len(classes))[0] if protocol == "base2new" else list(range(len(classes)))


def training_data(dataset: str, seed: int, keep: list[int], patches: bool = False) -> TrainData:
    """The seed's few-shot draw (recorded in fewshot.json at shard time), restricted to `keep` labels and
    relabelled to positions in `keep`."""
    draws = read_json(shard_dir(dataset) / "fewshot.json")["seeds"]
    if str(seed) not in draws:
        raise UserError(f"{dataset}: seed {seed} was not sharded (have {sorted(draws)}); rerun the shard stage")
    tensors, keys = load_split(dataset, "train", patches)
    wanted = set(draws[str(seed)]["train"])
    rows = torch.tensor([i for i, k in enumerate(keys) if k in wanted], dtype=torch.long)
    mask, labels = relabel(tensors["labels"][rows], keep)
    rows = rows[mask]
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
    from promptlab.evaluate import count_correct

    labels, feats = test["labels"], test["global"][:, 0]
    patches = test["patches"][:, 0] if "patches" in test else None
    if keep is not None:
        mask, labels = relabel(labels, keep)
        feats, classes = feats[mask], classes.subset(keep)
        patches = patches[mask] if patches is not None else None
    method = load_method(method_dir, clip, classes)
    return count_correct(method, feats, labels, classes, patches)


def evaluate_run(protocol: str, dataset: str, method_dir: Path, clip: FrozenCLIP, targets: list[str],
                 patches: bool = False) -> dict:
    """base2new: {"base": counts, "new": counts}; domain_shift: {"targets": {dataset id: counts}} including
    the source itself, each target scored with its own class list. Each dataset's bank and test features are
    read once; patch tokens only when the method uses them."""
    if protocol == "base2new":
        classes, (test, _) = load_class_set(dataset), load_split(dataset, "test", patches)
        base, new = base_new_labels(len(classes))
        return {"base": score(method_dir, clip, classes, test, base),
                "new": score(method_dir, clip, classes, test, new)}
    return {"targets": {t: score(method_dir, clip, load_class_set(t), load_split(t, "test", patches)[0])
                        for t in [dataset, *targets]}}
