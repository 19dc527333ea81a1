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
from promptlab.errors import UserError

ENSEMBLES: dict[str, list[str]] = {
    "clip80": [t("{}") for t in zero_shot_metadata.OPENAI_IMAGENET_TEMPLATES],
    "clip7": [t("{}") for t in zero_shot_metadata.SIMPLE_IMAGENET_TEMPLATES],
}


@dataclass
class ClassSet:
    """The classes a classifier is built for, with their cached hand-crafted text features.

    hand_features [C, D], each ensembles[name] [C, D] and descriptions [C, D] (per class: the normalised mean
    of its LLM description sentences' normalised features, CuPL-style; None when the bank has none) are
    L2-normalised, rows indexed like `names`. sentences [S, D] holds every description sentence's own
    normalised feature, class-major, with sentence_labels [S] (int64) giving each row's class index; methods
    that attend over a class's descriptions (aape) read these."""

    names: list[str]
    template: str
    hand_features: torch.Tensor
    ensembles: dict[str, torch.Tensor] = field(default_factory=dict)
    descriptions: torch.Tensor | None = None
    sentences: torch.Tensor | None = None
    sentence_labels: torch.Tensor | None = None
    dataset: str | None = None  # the dataset id the classes come from (a method's own per-dataset data: kgcoop)

    def __len__(self) -> int:
        return len(self.names)

    def template_features(self, choice: str, *, option: str) -> torch.Tensor:
        """[C, D] frozen text features of "dataset" (the dataset's hand-crafted template) or of a named template
        ensemble in the bank (clip80, clip7, or a user template list). `option` is the params key that chose it
        (e.g. "zeroshot.template"), named in the error."""
        if choice == "dataset":
            return self.hand_features
        if choice not in self.ensembles:
            raise UserError(f"{option}={choice!r}: the prompt bank has no such template set "
                            f"(has: dataset, {', '.join(sorted(self.ensembles))})")
        return self.ensembles[choice]

    def subset(self, labels: list[int]) -> "ClassSet":
        idx = torch.tensor(labels, dtype=torch.long)
        sentences = sentence_labels = None
        if self.sentences is not None:
            position = torch.full((len(self.names),), -1, dtype=torch.long)
            position[idx] = torch.arange(len(labels))
            new = position[self.sentence_labels]  # -1 for sentences of dropped classes
            order = torch.argsort(new, stable=True)[(new < 0).sum():]  # class-major in the new order
            sentences, sentence_labels = self.sentences[order], new[order]
        return ClassSet([self.names[i] for i in labels], self.template, self.hand_features[idx],
                        {k: v[idx] for k, v in self.ensembles.items()},
                        self.descriptions[idx] if self.descriptions is not None else None,
                        sentences, sentence_labels, self.dataset)

    def to(self, device: torch.device | str) -> "ClassSet":
        """The same classes with every feature tensor on `device` (where the method scoring them lives)."""
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return ClassSet(self.names, self.template, move(self.hand_features),
                        {k: move(v) for k, v in self.ensembles.items()}, move(self.descriptions),
                        move(self.sentences), move(self.sentence_labels), self.dataset)

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"hand": self.hand_features, **{f"ensemble.{k}": v for k, v in self.ensembles.items()}}
        if self.descriptions is not None:
            out["descriptions"] = self.descriptions
        if self.sentences is not None:
            out["sentences"], out["sentence_labels"] = self.sentences, self.sentence_labels
        return out

    @classmethod
    def from_tensors(cls, names: list[str], template: str, tensors: dict[str, torch.Tensor],
                     dataset: str | None = None) -> "ClassSet":
        ens = {k.removeprefix("ensemble."): v.float() for k, v in tensors.items() if k.startswith("ensemble.")}
        desc = tensors["descriptions"].float() if "descriptions" in tensors else None
        sentences = tensors["sentences"].float() if "sentences" in tensors else None
        return cls(list(names), template, tensors["hand"].float(), ens, desc, sentences,
                   tensors.get("sentence_labels"), dataset)


def description_features(text: TextEncoder, sentences: list[list[str]]
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Encode every sentence once: (class means [C, D] = per class the normalised mean of its sentences'
    normalised features, CuPL's classifier; sentence features [S, D]; sentence labels [S] int64)."""
    flat = [s for per_class in sentences for s in per_class]
    feats = text.encode_texts(flat)  # [S, D], class-major
    counts = torch.tensor([len(s) for s in sentences], device=feats.device)
    labels = torch.repeat_interleave(torch.arange(len(sentences), device=feats.device), counts)
    sums = torch.zeros(len(sentences), feats.shape[1], device=feats.device).index_add_(0, labels, feats)
    return F.normalize(sums, dim=-1), feats, labels


def ensemble_features(text: TextEncoder, names: list[str], templates: list[str]) -> torch.Tensor:
    """[C, D]: per class, mean of the normalised template features, renormalised."""
    prompts = [t.format(n) for n in names for t in templates]  # class-major: [C * T]
    feats = text.encode_texts(prompts).view(len(names), len(templates), -1)
    return F.normalize(feats.mean(dim=1), dim=-1)


def build_class_set(text: TextEncoder, names: list[str], template: str,
                    ensembles: tuple[str, ...] = tuple(ENSEMBLES),
                    descriptions: list[list[str]] | None = None,
                    extra_ensembles: dict[str, list[str]] | None = None) -> ClassSet:
    """Encode the bank: the dataset template, the named CLIP `ensembles`, the user's `extra_ensembles`
    ({name: templates}, params prompts.templates, stored beside clip80/clip7 under their names) and, when given,
    the description sentences per class."""
    hand = text.encode_texts([template.format(n) for n in names])
    lists = {**{e: ENSEMBLES[e] for e in ensembles}, **(extra_ensembles or {})}
    ens = {e: ensemble_features(text, names, templates) for e, templates in lists.items()}
    if descriptions is None:
        return ClassSet(list(names), template, hand, ens)
    return ClassSet(list(names), template, hand, ens, *description_features(text, descriptions))
