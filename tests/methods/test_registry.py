"""Every registered method, trained a few steps on a tiny separable problem: loss falls, logits finite,
and only the method's own tensors are learned. New methods are picked up automatically."""

import pytest
import torch
import torch.nn.functional as F

from promptlab.config import validate_params
from promptlab.evaluate import count_correct
from promptlab.methods import REGISTRY
from promptlab.train import TrainData, train


def _separable_data(class_set, n_per_class=8, views=2):
    """Image features near each class's hand-crafted text feature, so the problem is learnable."""
    gen = torch.Generator().manual_seed(0)
    centers = class_set.hand_features.repeat_interleave(n_per_class, dim=0)  # [N, D]
    feats = centers[:, None] + 0.05 * torch.randn(len(centers), views, centers.shape[1], generator=gen)
    labels = torch.arange(len(class_set)).repeat_interleave(n_per_class)
    patches = torch.randn(len(centers), views, 16, centers.shape[1], generator=gen)
    return TrainData(feats, labels, patches)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_method_trains_and_scores(name, frozen_clip, class_set):
    params = validate_params({})
    cfg = getattr(params, name)
    cls = REGISTRY[name]
    torch.manual_seed(0)
    method = cls(cfg, frozen_clip, class_set)
    data = _separable_data(class_set)
    clip_before = {k: v.clone() for k, v in frozen_clip.loaded.model.state_dict().items()}
    if cls.trainable:
        cfg = cfg.model_copy(update={"epochs": 4, "batch_size": 16, "warmup_epochs": 0, "lr": 0.01})
        history = train(method, data, class_set, cfg, seed=1)
        assert history[-1]["loss"] < history[0]["loss"]
        assert set(method.learned_state()) == {n for n, p in method.named_parameters() if p.requires_grad}
    result = count_correct(method, data.features[:, 0], data.labels, class_set, data.patches[:, 0])
    assert result["total"] == len(data.labels) and 0 <= result["correct"] <= result["total"]
    with torch.no_grad():
        from promptlab.methods.base import Batch

        logits = method.logits(Batch(F.normalize(data.features[:4, 0], dim=-1), data.labels[:4]), class_set)
    assert logits.shape == (4, len(class_set)) and torch.isfinite(logits).all()
    for k, v in frozen_clip.loaded.model.state_dict().items():
        assert torch.equal(v, clip_before[k]), f"CLIP tensor {k} changed"
