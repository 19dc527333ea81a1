"""PromptSRC: each regularising term against an independent computation, GPA weights and aggregated state by
hand, and the frozen teachers."""

import math

import pytest
import torch
import torch.nn.functional as F

from deep_helpers import grads_only_on, pixel_batch
from promptlab.methods.promptsrc.config import PromptSRCConfig
from promptlab.methods.promptsrc.method import TEACHER_TEMPLATES, PromptSRC, gpa_weights


def _src(frozen_clip, class_set, **kw):
    torch.manual_seed(0)
    return PromptSRC(PromptSRCConfig(**{"depth_text": 3, "depth_vision": 3, **kw}), frozen_clip, class_set)


def test_defaults_are_the_official_base_to_new_config():
    cfg = PromptSRCConfig()
    assert (cfg.n_ctx_text, cfg.n_ctx_vision, cfg.depth_text, cfg.depth_vision, cfg.lr, cfg.epochs) == \
        (4, 4, 9, 9, 0.0025, 20)
    assert (cfg.text_loss_weight, cfg.image_loss_weight, cfg.kl_weight, cfg.kl_temperature) == (25, 10, 1, 1)
    assert (cfg.gpa, cfg.gpa_mean, cfg.gpa_std) == (True, 15, 1)


def test_gpa_weights_by_hand():
    e = math.exp(-0.5)  # N(1; 2, 1) / N(2; 2, 1)
    assert gpa_weights(3, 2, 1) == pytest.approx([e / (1 + 2 * e), 1 / (1 + 2 * e), e / (1 + 2 * e)], rel=1e-12)
    w = gpa_weights(20, 15, 1)
    assert abs(sum(w) - 1) < 1e-12 and max(range(20), key=lambda i: w[i]) == 14  # epoch 15 (from 1)


def test_aggregated_state_by_hand(frozen_clip, class_set):
    m = _src(frozen_clip, class_set, epochs=3, gpa_mean=2, gpa_std=1)
    states = []
    for epoch in range(3):
        with torch.no_grad():
            for p in m.parameters():
                p.normal_()
        states.append({n: p.detach().clone() for n, p in m.named_parameters()})
        m.on_epoch_end(epoch)
    m.finish_training()
    w = gpa_weights(3, 2, 1)
    for name, p in m.named_parameters():
        expected = w[0] * states[0][name] + w[1] * states[1][name] + w[2] * states[2][name]
        torch.testing.assert_close(p.detach(), expected, rtol=0, atol=1e-6)
    m.finish_training()  # idempotent
    torch.testing.assert_close(m.ctx.detach(), w[0] * states[0]["ctx"] + w[1] * states[1]["ctx"]
                               + w[2] * states[2]["ctx"], rtol=0, atol=1e-6)


def test_gpa_off_keeps_the_last_prompts_and_no_buffers(frozen_clip, class_set):
    m = _src(frozen_clip, class_set, gpa=False)
    before = m.ctx.detach().clone()
    m.on_epoch_end(0)
    m.finish_training()
    assert torch.equal(m.ctx.detach(), before) and not list(m.buffers())


def test_teacher_text_is_the_mean_of_unnormalised_features_over_60_templates(frozen_clip, class_set):
    m = _src(frozen_clip, class_set)
    model, tok = frozen_clip.loaded.model, frozen_clip.loaded.tokenizer
    assert len(TEACHER_TEMPLATES) == 60 and TEACHER_TEMPLATES[39]("x") == "a photo of a x."
    with torch.no_grad():
        feats = torch.stack([model.encode_text(tok([t(n) for n in class_set.names])) for t in TEACHER_TEMPLATES])
    expected = F.normalize(feats.mean(0), dim=-1)  # unnormalised mean, then normalised
    torch.testing.assert_close(m.teacher_text(class_set), expected, rtol=0, atol=1e-5)
    assert (expected - F.normalize(F.normalize(feats, dim=-1).mean(0), dim=-1)).abs().max() > 1e-6


def test_loss_terms_against_independent_computation(frozen_clip, class_set):
    m = _src(frozen_clip, class_set)
    batch = pixel_batch(n=5)
    terms, logits = m.loss_terms(batch, class_set)
    model, tau = frozen_clip.loaded.model, frozen_clip.logit_scale
    with torch.no_grad():
        t = m.text_features(class_set)
        v = m.image_features(batch.images)
        t_bar = m.teacher_text(class_set)
        v_bar = F.normalize(model.encode_image(batch.images), dim=-1)
        z, z_bar = tau * v @ t.t(), tau * v_bar @ t_bar.t()
        p_bar = z_bar.softmax(-1)
        kl = (p_bar * (p_bar.log() - z.log_softmax(-1))).sum() / (5 * len(class_set))  # sum / (B·C)
    torch.testing.assert_close(logits.detach(), z, rtol=0, atol=1e-5)
    torch.testing.assert_close(terms["ce"].detach(), F.cross_entropy(z, batch.labels), rtol=0, atol=1e-6)
    torch.testing.assert_close(terms["text_l1"].detach(), 25 * (t - t_bar).abs().mean(), rtol=0, atol=1e-6)
    torch.testing.assert_close(terms["image_l1"].detach(), 10 * (v - v_bar).abs().mean(), rtol=0, atol=1e-6)
    torch.testing.assert_close(terms["kl"].detach(), kl, rtol=0, atol=1e-7)
    loss, _ = m.loss(batch, class_set)
    torch.testing.assert_close(loss.detach(), sum(terms.values()).detach(), rtol=0, atol=1e-6)
    loss.backward()
    grads_only_on(m, frozen_clip)


def test_zero_weights_switch_the_regularisers_off(frozen_clip, class_set):
    m = _src(frozen_clip, class_set, text_loss_weight=0, image_loss_weight=0, kl_weight=0)
    terms, _ = m.loss_terms(pixel_batch(), class_set)
    assert all(float(terms[k].detach()) == 0.0 for k in ("text_l1", "image_l1", "kl"))
