"""Scoring a trained method (docs/protocols.md): top-1 counts on test batches, and each protocol's result.

Raw correct/total counts are kept everywhere; percentages are derived from them, and HM is computed from
the averaged accuracies, never from rounded log lines."""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F

from promptlab.data.coop_format import base_new_labels
from promptlab.methods.base import Batch, PromptMethod
from promptlab.prompts.bank import ClassSet


def feature_batches(features: torch.Tensor, labels: torch.Tensor, batch_size: int = 1024) -> Iterator[Batch]:
    """Test batches from cached features [N, D] (view 0), L2-normalised per batch."""
    for i in range(0, len(labels), batch_size):
        yield Batch(F.normalize(features[i:i + batch_size].float(), dim=-1), labels[i:i + batch_size])


@torch.no_grad()
def score_batches(method: PromptMethod, batches: Iterable[Batch], classes: ClassSet) -> dict:
    """Top-1 counts of `method` over test batches, each moved to the method's device -> {correct, total, acc}."""
    method.eval()
    classes = classes.to(method.device)
    cached = method.precompute(classes)
    correct = total = 0
    for batch in batches:
        batch = batch.to(method.device)
        method.check_device(batch)
        logits = method.logits(batch, classes, cached)
        correct += int((logits.argmax(dim=-1) == batch.labels).sum())
        total += len(batch)
    return {"correct": correct, "total": total, "acc": 100.0 * correct / total if total else float("nan")}


def count_correct(method: PromptMethod, features: torch.Tensor, labels: torch.Tensor, classes: ClassSet,
                  batch_size: int = 1024) -> dict:
    """features [N, D] (view 0 of the test features), labels [N] in 0..C-1 -> {correct, total, acc}."""
    return score_batches(method, feature_batches(features, labels, batch_size), classes)


def relabel(labels: torch.Tensor, keep: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows whose label is in `keep`, relabelled to their position in `keep` (CoOp's base/new relabelling).
    Returns (row mask [N] bool, new labels [n_kept])."""
    size = max([int(labels.max()) if len(labels) else -1, *keep]) + 1
    mapping = torch.full((size,), -1, dtype=torch.long)
    mapping[torch.tensor(keep, dtype=torch.long)] = torch.arange(len(keep))
    mask = mapping[labels] >= 0
    return mask, mapping[labels[mask]]


def evaluate_run(protocol: str, dataset: str, targets: tuple[str, ...], n_classes: int,
                 score: Callable[[str, list[int] | None], dict | None]) -> dict:
    """A run's result from `score(test dataset, kept labels or None for all)`, which returns counts, or None
    when the method cannot score those classes (a closed-vocabulary method on classes it was not trained on):
    base2new {"base", "new"} (each half scored against its own classes only, as CoOp does); few_shot {"test"}
    on all the dataset's classes; domain_shift / cross_dataset {"targets": {id: counts}}, the source included,
    each with its own class list."""
    if protocol == "base2new":
        base, new = base_new_labels(n_classes)
        return {"base": score(dataset, base), "new": score(dataset, new)}
    if protocol == "few_shot":
        return {"test": score(dataset, None)}
    return {"targets": {t: score(t, None) for t in [dataset, *targets]}}
