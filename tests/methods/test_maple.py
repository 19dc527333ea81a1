"""MaPLe: vision prompts are per-depth linear projections of the text prompts (widths from the model)."""

import torch
import torch.nn.functional as F

from deep_helpers import first_layer_text, grads_only_on, pixel_batch
from promptlab.methods.maple.config import MaPLeConfig
from promptlab.methods.maple.method import MaPLe


def _maple(frozen_clip, class_set, **kw):
    torch.manual_seed(0)
    return MaPLe(MaPLeConfig(**{"depth": 3, **kw}), frozen_clip, class_set)


def test_defaults_are_the_official_base_to_new_config():
    cfg = MaPLeConfig()
    assert (cfg.n_ctx, cfg.ctx_init, cfg.depth, cfg.lr, cfg.epochs, cfg.batch_size) == \
        (2, "a photo of a", 9, 0.0035, 5, 4)


def test_coupling_layout(frozen_clip, class_set):
    m = _maple(frozen_clip, class_set)
    assert (m.proj.in_features, m.proj.out_features) == (128, 192)  # text width -> vision width of the model
    assert len(m.text_deep) == len(m.deep_proj) == 2
    assert torch.equal(m.deep_proj[0].weight, m.deep_proj[1].weight)  # copies of one initialisation
    assert not torch.equal(m.proj.weight[:, :4], m.deep_proj[0].weight[:, :4])  # the first one is its own
    p = m.prompts()
    with torch.no_grad():
        torch.testing.assert_close(p.vision_first, m.ctx @ m.proj.weight.t() + m.proj.bias)
        for l in range(2):
            w, b = m.deep_proj[l].weight, m.deep_proj[l].bias
            torch.testing.assert_close(p.vision_deep[l], m.text_deep[l] @ w.t() + b)
            assert p.text_deep[l] is m.text_deep[l]


def test_logits_and_gradients(frozen_clip, class_set):
    m = _maple(frozen_clip, class_set)
    batch = pixel_batch()
    with torch.no_grad():
        x, eot = first_layer_text(frozen_clip, class_set.names, "a photo of a", m.ctx)
        deep = list(m.text_deep)
        t = F.normalize(m.towers.encode_text(x, eot, deep, n_ctx=2, truncate=False), dim=-1)
        vis = [f(q) for f, q in zip(m.deep_proj, deep)]
        v = F.normalize(m.towers.encode_image(batch.images, m.proj(m.ctx), vis), dim=-1)
        torch.testing.assert_close(m.logits(batch, class_set), frozen_clip.logit_scale * v @ t.t(),
                                   rtol=0, atol=1e-4)
    m.loss(batch, class_set)[0].backward()
    grads_only_on(m, frozen_clip)
