"""Reading the pipeline's upstream artifacts for a run: shards' few-shot draws and class names, cached image
features, prompt banks. The run stage passes the three folders (dvc.yaml decides where they are).

    shards/<dataset>/fewshot.json, classnames.json    (stage shard)
    features/<dataset>/<split>.safetensors            (stage features: global [N, V, D], patches, labels, keys)
    prompts/<dataset>/bank.safetensors                (stage prompts: the class set's text features)
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import torch

from promptlab.data.coop_format import base_new_labels
from promptlab.data.pixels import PixelOptions
from promptlab.data.shards import read_manifest
from promptlab.errors import UserError
from promptlab.evaluate import relabel
from promptlab.io import load_tensors, read_json
from promptlab.methods.base import TrainData
from promptlab.prompts.bank import ClassSet


@dataclass(frozen=True)
class Artifacts:
    shards: Path = Path("data/shards")
    features: Path = Path("data/features")
    prompts: Path = Path("data/prompts")
    pixels: PixelOptions = PixelOptions()  # how pixel methods decode and augment the shards

    @functools.cache
    def class_set(self, dataset: str) -> ClassSet:
        """The dataset's classes with their cached text features (CPU; ClassSet.to moves them)."""
        tensors, meta = load_tensors(self.prompts / dataset / "bank.safetensors")
        return ClassSet.from_tensors(meta["classnames"], meta["template"], tensors, dataset=dataset)

    def classnames(self, dataset: str) -> list[str]:
        return read_json(self.shards / dataset / "classnames.json")

    def split(self, dataset: str, split: str, patches: bool = True) -> tuple[dict[str, torch.Tensor], list[str]]:
        """Cached features of a split; patch tokens are read only when asked for (they dominate the file)."""
        path = self.features / dataset / f"{split}.safetensors"
        if not path.exists():
            raise UserError(f"{dataset}: no cached features for split '{split}' ({path})")
        tensors, meta = load_tensors(path, skip=() if patches else ("patches",))
        return tensors, meta["keys"]

    def fewshot(self, dataset: str, seed: int, shots: int | None = None) -> dict:
        """The seed's recorded draw {"train": keys, "val": keys} (checked against the sharded K)."""
        fewshot = read_json(self.shards / dataset / "fewshot.json")
        draws = fewshot["seeds"]
        if str(seed) not in draws:
            raise UserError(f"{dataset}: seed {seed} was not sharded (have {sorted(draws)}); rerun the shard stage")
        if shots is not None and shots > fewshot["shots"]:
            raise UserError(f"{dataset}: {shots} shots asked, the shards hold {fewshot['shots']} (raise data.shots)")
        return {**draws[str(seed)], "shots": fewshot["shots"]}

    def training_data(self, dataset: str, seed: int, keep: list[int], patches: bool = False,
                      split: str = "train", shots: int | None = None) -> TrainData:
        """The seed's few-shot draw of `split` (train: K shots, V views; val: min(K, 4) shots, 1 view), as
        recorded in fewshot.json at shard time, restricted to `keep` labels and relabelled to positions in
        `keep`. `shots` below the sharded K takes a nested subsample (train: `shots`, val: min(shots, 4))."""
        draw = self.fewshot(dataset, seed, shots)
        tensors, keys = self.split(dataset, split, patches)
        wanted = set(draw[split])
        rows = torch.tensor([i for i, k in enumerate(keys) if k in wanted], dtype=torch.long)
        mask, labels = relabel(tensors["labels"][rows], keep)
        rows = rows[mask]
        if shots is not None and shots < draw["shots"]:
            pick = nested_subsample(labels, shots if split == "train" else min(shots, 4), seed)
            rows, labels = rows[pick], labels[pick]
        patches = tensors["patches"][rows] if "patches" in tensors else None
        return TrainData(tensors["global"][rows], labels, patches)

    def training_keys(self, dataset: str, seed: int, keep: list[int], shots: int | None = None
                      ) -> tuple[list[str], torch.Tensor]:
        """The same train draw as `training_data`, as shard sample keys and relabelled labels [N] (pixel
        methods): rows in manifest order, which is the cached features' order, so the selection is identical."""
        draw = self.fewshot(dataset, seed, shots)
        manifest = read_manifest(self.shards / dataset).filter(pl.col("split") == "train")
        wanted = set(draw["train"])
        rows = [(k, lab) for k, lab in zip(manifest["key"], manifest["label"]) if k in wanted]
        mask, labels = relabel(torch.tensor([lab for _, lab in rows], dtype=torch.long), keep)
        keys = [k for (k, _), m in zip(rows, mask.tolist()) if m]
        if shots is not None and shots < draw["shots"]:
            pick = nested_subsample(labels, shots, seed)
            keys, labels = [keys[i] for i in pick.tolist()], labels[pick]
        return keys, labels


def protocol_classes(trains_on_base: bool, n_classes: int) -> list[int]:
    """Labels a run trains on: the base half for base2new, all classes otherwise."""
    return base_new_labels(n_classes)[0] if trains_on_base else list(range(n_classes))


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
