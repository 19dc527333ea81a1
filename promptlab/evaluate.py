"""Accuracy of a method on cached test features, and the protocols' bookkeeping (DESIGN.md §5).

Raw correct/total counts are kept everywhere; percentages are derived from them, and HM is computed from
the averaged accuracies, never from rounded log lines."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from promptlab.methods.base import Batch, PromptMethod
from promptlab.prompts.bank import ClassSet


@torch.no_grad()
def count_correct(method: PromptMethod, features: torch.Tensor, labels: torch.Tensor, classes: ClassSet,
                  patches: torch.Tensor | None = None, batch_size: int = 1024) -> dict:
    """features [N, D] (view 0 of the test features), labels [N] in 0..C-1 -> {correct, total, acc}."""
    method.eval()
    cached = method.precompute(classes)
    correct = 0
    for i in range(0, len(labels), batch_size):
        feats = F.normalize(features[i:i + batch_size].float(), dim=-1)
        p = patches[i:i + batch_size].float() if patches is not None and method.needs_patches else None
        logits = method.logits(Batch(feats, labels[i:i + batch_size], p), classes, cached)
        correct += int((logits.argmax(dim=-1) == labels[i:i + batch_size]).sum())
    total = int(len(labels))
    return {"correct": correct, "total": total, "acc": 100.0 * correct / total if total else float("nan")}


def relabel(labels: torch.Tensor, keep: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows whose label is in `keep`, relabelled to their position in `keep` (CoOp's base/new relabelling).
    Returns (row mask [N] bool, new labels [n_kept])."""
    size = max([int(labels.max()) if len(labels) else -1, *keep]) + 1
    mapping = torch.full((size,), -1, dtype=torch.long)
    mapping[torch.tensor(keep, dtype=torch.long)] = torch.arange(len(keep))
    mask = mapping[labels] >= 0
    return mask, mapping[labels[mask]]
