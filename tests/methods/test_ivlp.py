"""IVLP: independent prompts in both towers, CE only; layout and logits against an independent assembly."""

import pytest
import torch
import torch.nn.functional as F

from deep_helpers import first_layer_text, grads_only_on, pixel_batch
from promptlab.errors import UserError
from promptlab.methods.ivlp.config import IVLPConfig
from promptlab.methods.ivlp.method import IVLP


def _ivlp(frozen_clip, class_set, **kw):
    torch.manual_seed(0)
    return IVLP(IVLPConfig(**{"depth_text": 3, "depth_vision": 4, **kw}), frozen_clip, class_set)


def test_defaults_are_the_promptsrc_repos_ivlp_baseline():
    cfg = IVLPConfig()
    assert (cfg.n_ctx_text, cfg.n_ctx_vision, cfg.depth_text, cfg.depth_vision, cfg.lr, cfg.epochs,
            cfg.batch_size, cfg.ctx_init) == (4, 4, 9, 9, 0.0025, 20, 4, "a photo of a")
    assert (cfg.momentum, cfg.weight_decay, cfg.warmup_epochs, cfg.warmup_lr) == (0.9, 5e-4, 1, 1e-5)


def test_layout_and_init(frozen_clip, class_set):
    m = _ivlp(frozen_clip, class_set, n_ctx_text=2, n_ctx_vision=3)
    ids = frozen_clip.loaded.tokenizer(["a photo"])
    torch.testing.assert_close(m.ctx.detach(), frozen_clip.loaded.model.token_embedding(ids)[0, 1:3])
    assert m.text_prefix == "a photo of a"  # "of a" stays as fixed tokens
    assert [tuple(p.shape) for p in m.text_deep] == [(2, 128)] * 2  # blocks 1, 2
    assert tuple(m.vision_first.shape) == (3, 192) and [tuple(p.shape) for p in m.vision_deep] == [(3, 192)] * 3
    deep = torch.cat([p.detach().flatten() for p in [*m.text_deep, m.vision_first, *m.vision_deep]])
    assert 0.015 < float(deep.std()) < 0.025  # N(0, 0.02²)


def test_random_init_above_four_tokens_uses_x_placeholders(frozen_clip, class_set):
    m = _ivlp(frozen_clip, class_set, n_ctx_text=6)
    assert m.text_prefix == "X X X X X X" and 0.01 < float(m.ctx.detach().std()) < 0.03


def test_logits_against_an_independent_assembly(frozen_clip, class_set):
    m = _ivlp(frozen_clip, class_set)
    batch = pixel_batch()
    x, eot = first_layer_text(frozen_clip, class_set.names, "a photo of a", m.ctx)
    towers = m.towers
    with torch.no_grad():
        t = F.normalize(towers.encode_text(x, eot, list(m.text_deep), n_ctx=4, truncate=False), dim=-1)
        v = F.normalize(towers.encode_image(batch.images, m.vision_first, list(m.vision_deep)), dim=-1)
        expected = frozen_clip.logit_scale * v @ t.t()
        got = m.logits(batch, class_set)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)
    loss, _ = m.loss(batch, class_set)
    torch.testing.assert_close(loss, F.cross_entropy(expected, batch.labels), rtol=0, atol=1e-5)


def test_gradients_reach_only_the_prompts(frozen_clip, class_set):
    m = _ivlp(frozen_clip, class_set)
    m.loss(pixel_batch(), class_set)[0].backward()
    grads_only_on(m, frozen_clip)


def test_vision_depth_zero_is_text_only(frozen_clip, class_set):
    m = _ivlp(frozen_clip, class_set, depth_vision=0)
    assert m.vision_first is None and len(m.vision_deep) == 0
    with torch.no_grad():
        v = m.image_features(pixel_batch().images)
        torch.testing.assert_close(v, F.normalize(frozen_clip.loaded.model.encode_image(pixel_batch().images), dim=-1))


def test_bad_settings_name_the_option(frozen_clip, class_set):
    with pytest.raises(UserError, match=r"ivlp.depth_vision=5: .* only 4 blocks"):
        _ivlp(frozen_clip, class_set, depth_vision=5)
    with pytest.raises(UserError, match=r"ivlp.n_ctx_text: n_ctx 3 exceeds the 2 tokens"):
        _ivlp(frozen_clip, class_set, n_ctx_text=3, ctx_init="a photo")
