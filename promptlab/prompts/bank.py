"""Template prompt banks and their cached text features.

A bank holds, per dataset, the hand-crafted template (CoOp's table, in data/datasets.yaml) and CLIP's 80 and
7 selected ImageNet templates (shipped by open_clip), each encoded for every class with the frozen text
encoder once. Ensembles follow CLIP: normalise each template's feature, average, renormalise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from open_clip import zero_shot_metadata

from promptlab.clip.text import TextEncoder

ENSEMBLES: dict[str, list[str]] = {
    "clip80": [t("{}") for t in zero_shot_metadata.OPENAI_IMAGENET_TEMPLATES],
    "clip7": [t("{}") for t in zero_shot_metadata.SIMPLE_IMAGENET_TEMPLATES],
}


@dataclass
class ClassSet:
    """The classes a classifier is built for, with their cached hand-crafted text features.

    hand_features [C, D] and each ensembles[name] [C, D] are L2-normalised, rows indexed like `names`."""

    names: list[str]
    template: str
    hand_features: torch.Tensor
    ensembles: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, labels: list[int]) -> "ClassSet":
        idx = torch.tensor(labels, dtype=torch.long)
        return ClassSet([self.names[i] for i in labels], self.template, self.hand_features[idx],
                        {k: v[idx] for k, v in self.ensembles.items()})

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"hand": self.hand_features, **{f"ensemble.{k}": v for k, v in self.ensembles.items()}}

    @classmethod
    def from_tensors(cls, names: list[str], template: str, tensors: dict[str, torch.Tensor]) -> "ClassSet":
        ens = {k.removeprefix("ensemble."): v.float() for k, v in tensors.items() if k.startswith("ensemble.")}
        return cls(list(names), template, tensors["hand"].float(), ens)


def ensemble_features(text: TextEncoder, names: list[str], templates: list[str]) -> torch.Tensor:
    """[C, D]: per class, mean of the normalised template features, renormalised."""
    prompts = [t.format(n) for n in names for t in templates]  # class-major: [C * T]
    feats = text.encode_texts(prompts).view(len(names), len(templates), -1)
    return F.normalize(feats.mean(dim=1), dim=-1)


def build_class_set(text: TextEncoder, names: list[str], template: str,
                    ensembles: tuple[str, ...] = tuple(ENSEMBLES)) -> ClassSet:
    hand = text.encode_texts([template.format(n) for n in names])
    return ClassSet(list(names), template, hand, {e: ensemble_features(text, names, ENSEMBLES[e]) for e in ensembles})
