"""Loss terms shared by several methods (pure functions on tensors, no parameters).

symmetric_info_nce is the symmetric CLIP-style contrastive loss between two paired sets of rows: row i of `a`
and row i of `b` are a positive pair, the other rows of the other side are the negatives. dualview uses it
between its soft and hand-crafted text views (pairs = classes), aape between images and their description
summaries (pairs = images; images of the same class are not negatives). open_clip.loss.ClipLoss computes the
unmasked form but takes a learned logit scale and has no way to drop same-class pairs, hence this helper.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def symmetric_info_nce(a: torch.Tensor, b: torch.Tensor, scale: float | torch.Tensor,
                       not_negative: torch.Tensor | None = None) -> torch.Tensor:
    """½[CE(S, I) + CE(Sᵀ, I)] with S = scale · a·bᵀ [N, N]; a, b [N, D] rows (unit rows give cosines).

    not_negative [N, N] bool (optional) marks pairs (i, j) that are neither positive nor negative, e.g. two
    images of the same class: they are left out of both softmax denominators (the diagonal always stays in).
    A row whose every off-diagonal pair is excluded contributes CE = 0 (only its positive is left)."""
    sim = scale * a @ b.t()  # [N, N], diagonal = the positive pairs
    if not_negative is not None:
        eye = torch.eye(len(sim), dtype=torch.bool, device=sim.device)
        sim = sim.masked_fill(not_negative & ~eye, float("-inf"))
    target = torch.arange(len(sim), device=sim.device)
    return 0.5 * (F.cross_entropy(sim, target) + F.cross_entropy(sim.t(), target))
