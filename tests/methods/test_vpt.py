"""VPT: deep vision prompts only; the class weights are the bank's frozen hand-crafted features."""

import torch
import torch.nn.functional as F

from deep_helpers import grads_only_on, pixel_batch
from promptlab.methods.vpt.config import VPTConfig
from promptlab.methods.vpt.method import VPT


def test_defaults_are_the_official_vpt_config():
    cfg = VPTConfig()
    assert (cfg.n_ctx_vision, cfg.depth_vision, cfg.lr, cfg.epochs, cfg.batch_size) == (8, 12, 0.0025, 5, 4)


def test_logits_use_hand_features_and_the_prompted_image_tower(frozen_clip, class_set):
    torch.manual_seed(0)
    m = VPT(VPTConfig(depth_vision=3, n_ctx_vision=2), frozen_clip, class_set)
    assert [n for n, _ in m.named_parameters()] == ["vision_first", "vision_deep.0", "vision_deep.1"]
    batch = pixel_batch()
    with torch.no_grad():
        v = F.normalize(m.towers.encode_image(batch.images, m.vision_first, list(m.vision_deep)), dim=-1)
        expected = frozen_clip.logit_scale * v @ class_set.hand_features.t()
        torch.testing.assert_close(m.logits(batch, class_set), expected, rtol=0, atol=1e-5)
    m.loss(batch, class_set)[0].backward()
    grads_only_on(m, frozen_clip)
