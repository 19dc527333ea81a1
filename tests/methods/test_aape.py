"""AAPE: the aggregator's masked attention, the reward and distillation terms and the instance-conditioned
classifier, each checked against an independent (loop / explicit-tensor) computation on small tensors."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from promptlab.errors import UserError
from promptlab.evaluate import count_correct
from promptlab.methods.aape.method import AAPE
from promptlab.methods.base import Batch
from promptlab.methods.zeroshot.method import ZeroShot
from promptlab.prompts.bank import ClassSet
from promptlab.train import train



def _aape(frozen_clip, class_set, perturb=0.0, **kw):
    torch.manual_seed(0)
    method = AAPE(AAPE.Config(**kw), frozen_clip, class_set)
    with torch.no_grad():  # a trained-looking state: move every parameter off its init
        for p in method.parameters():
            p.add_(perturb * torch.randn_like(p))
    return method


def _batch(n=8, seed=0, d=128):
    gen = torch.Generator().manual_seed(seed)
    return Batch(F.normalize(torch.randn(n, d, generator=gen), dim=-1), torch.arange(n) % 6)


def test_defaults():
    cfg = AAPE.Config()
    assert (cfg.lr, cfg.batch_size, cfg.lam, cfg.mu, cfg.combine, cfg.distill, cfg.reward) == \
        (0.002, 32, 1.0, 1.0, "add", "l2", "contrastive")


@pytest.mark.parametrize("heads,value_proj", [(1, False), (2, True)])
def test_summary_is_attention_over_the_images_own_class_sentences(frozen_clip, class_set, heads, value_proj):
    method = _aape(frozen_clip, class_set, perturb=0.3, heads=heads, value_proj=value_proj)
    batch = _batch(n=5)
    with torch.no_grad():
        got = method.summary(batch.features, batch.labels, class_set)
    d, e = 128, 128 // heads
    for b in range(5):  # per image: only its class's sentences, each head separately
        t = class_set.sentences[class_set.sentence_labels == batch.labels[b]]  # [S_y, D]
        q, k = method.w_q.detach() @ batch.features[b], t @ method.w_k.detach().t()
        v = t @ method.w_v.detach().t() if value_proj else t
        parts = []
        for h in range(heads):
            sl = slice(h * e, (h + 1) * e)
            alpha = torch.softmax(k[:, sl] @ q[sl] / e ** 0.5, dim=0)  # [S_y]
            parts.append(alpha @ v[:, sl])
        torch.testing.assert_close(got[b], torch.cat(parts), rtol=1e-5, atol=1e-6)
    assert got.shape == (5, d)


@pytest.mark.parametrize("scale", [None, 3.0])
def test_contrastive_reward_is_a_symmetric_infonce(frozen_clip, class_set, scale):
    method = _aape(frozen_clip, class_set, reward_scale=scale)
    gen = torch.Generator().manual_seed(3)
    f, s = torch.randn(6, 128, generator=gen), torch.randn(6, 128, generator=gen)
    rho = scale or frozen_clip.logit_scale
    cos = torch.tensor([[F.cosine_similarity(s[i], f[j], dim=0) for j in range(6)] for i in range(6)])
    s_to_f = -torch.stack([torch.log_softmax(rho * cos[i], 0)[i] for i in range(6)]).mean()
    f_to_s = -torch.stack([torch.log_softmax(rho * cos[:, j], 0)[j] for j in range(6)]).mean()
    torch.testing.assert_close(method.reward_loss(f, s), 0.5 * (s_to_f + f_to_s), rtol=1e-5, atol=1e-5)
    score = _aape(frozen_clip, class_set, reward="score").reward_loss(f, s)
    torch.testing.assert_close(score, 1 - cos.diagonal().mean(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("distill", ["l2", "cos"])
def test_distillation_is_stop_gradient(frozen_clip, class_set, distill):
    method = _aape(frozen_clip, class_set, perturb=0.1, distill=distill)
    batch = _batch()
    s = method.summary(batch.features, batch.labels, class_set)
    a = method.generator(batch.features)
    term = method.distill_loss(a, s)
    want = ((a - s) ** 2).sum(-1).mean() if distill == "l2" else \
        torch.stack([1 - torch.dot(a[i], s[i]) / (a[i].norm() * s[i].norm()) for i in range(len(a))]).mean()
    torch.testing.assert_close(term, want)
    term.backward()
    assert method.w_q.grad is None and method.w_k.grad is None  # no path back into the aggregator
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.generator.parameters())
    # and the whole loss without the reward (μ = 0) leaves the aggregator untouched, with it not
    method.zero_grad(set_to_none=True)
    method.cfg = method.cfg.model_copy(update={"mu": 0.0})
    method.backward(batch, class_set)
    assert method.w_q.grad is None and method.w_k.grad is None
    method.cfg = method.cfg.model_copy(update={"mu": 1.0})
    method.backward(batch, class_set)
    assert method.w_q.grad.abs().sum() > 0 and method.w_k.grad.abs().sum() > 0


@pytest.mark.parametrize("combine", ["add", "concat"])
def test_logits_match_explicit_instance_weights(frozen_clip, class_set, combine):
    method = _aape(frozen_clip, class_set, perturb=0.05, combine=combine)
    batch = _batch(n=4)
    with torch.no_grad():
        got = method.logits(batch, class_set)
        a, t = method.generator(batch.features), class_set.hand_features  # [B, D], [C, D]
        if combine == "add":
            w = t[None] + (a @ method.proj.t())[:, None]  # [B, C, D]
        else:
            w = torch.cat([t[None].expand(4, -1, -1), a[:, None].expand(-1, len(t), -1)], -1) @ method.proj.t()
        want = frozen_clip.logit_scale * torch.einsum("bd,bcd->bc", batch.features, F.normalize(w, dim=-1))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert (a[0] - a[1]).abs().max() > 1e-4  # the weights really are per image


@pytest.mark.parametrize("template", ["dataset", "clip80"])
def test_untrained_add_is_zero_shot(frozen_clip, class_set, template):
    method = _aape(frozen_clip, class_set, template=template)
    assert method.proj.abs().sum() == 0
    zs = ZeroShot(ZeroShot.Config(template=template), frozen_clip, class_set)
    batch = _batch()
    with torch.no_grad():
        torch.testing.assert_close(method.logits(batch, class_set), zs.logits(batch, class_set),
                                   rtol=1e-5, atol=1e-5)


def test_concat_with_zero_generator_is_the_template_classifier(frozen_clip, class_set):
    method = _aape(frozen_clip, class_set, combine="concat")
    batch = _batch()
    zs = frozen_clip.logit_scale * batch.features @ class_set.hand_features.t()
    with torch.no_grad():
        torch.testing.assert_close(method.logits(batch, class_set), zs, rtol=1e-5, atol=1e-5)  # P = [I, 0]
        method.proj[:, 128:].normal_()  # a trained-looking AAPE half of P, but a zero generator output
        method.generator[2].weight.zero_()
        method.generator[2].bias.zero_()
        torch.testing.assert_close(method.logits(batch, class_set), zs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("combine", ["add", "concat"])
def test_gradients_reach_only_the_methods_parameters(frozen_clip, class_set, combine):
    method = _aape(frozen_clip, class_set, perturb=0.01, combine=combine, value_proj=True)
    names = {n for n, _ in method.named_parameters()}
    assert names == {"w_q", "w_k", "w_v", "proj", "generator.0.weight", "generator.0.bias",
                     "generator.2.weight", "generator.2.bias"} == set(method.learned_state())
    loss, logits = method.backward(_batch(), class_set)
    assert torch.isfinite(loss) and logits.shape == (8, 6)
    for n, p in method.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n
    assert all(p.grad is None for p in frozen_clip.loaded.model.parameters())
    assert not class_set.sentences.requires_grad and not class_set.hand_features.requires_grad


def test_training_lowers_the_loss_and_needs_sentences(frozen_clip, class_set, separable_data):
    data = separable_data(class_set, n_per_class=8)
    method = _aape(frozen_clip, class_set)
    clip_before = {k: v.clone() for k, v in frozen_clip.loaded.model.state_dict().items()}
    cfg = method.cfg.model_copy(update={"epochs": 5, "batch_size": 16, "warmup_epochs": 0, "lr": 0.01})
    history = train(method, data, class_set, cfg, seed=1)
    assert history[-1]["loss"] < history[0]["loss"]
    assert all(torch.equal(v, clip_before[k]) for k, v in frozen_clip.loaded.model.state_dict().items())
    bare = dataclasses.replace(class_set, sentences=None, sentence_labels=None, descriptions=None)
    with pytest.raises(UserError, match="aape"):
        train(_aape(frozen_clip, class_set), data, bare, cfg, seed=1)


def test_scores_classes_without_descriptions_after_reload(frozen_clip, class_set, separable_data):
    """Inference needs only the template features: a reloaded method scores a ClassSet with no sentences
    (the new classes / shifted domain case), a subset of classes included."""
    method = _aape(frozen_clip, class_set, perturb=0.05, combine="concat")
    names_only = ClassSet(class_set.names, class_set.template, class_set.hand_features[:0])  # as load_method
    reloaded = AAPE(method.cfg, frozen_clip, names_only)
    reloaded.load_state_dict(method.learned_state())
    bare = dataclasses.replace(class_set, sentences=None, sentence_labels=None, descriptions=None)
    data = separable_data(class_set)
    with torch.no_grad():
        feats = F.normalize(data.features[:, 0], dim=-1)
        torch.testing.assert_close(reloaded.logits(Batch(feats, data.labels), bare),
                                   method.logits(Batch(feats, data.labels), class_set))
    result = count_correct(reloaded, data.features[:, 0], data.labels, bare, batch_size=5)
    assert result["total"] == 24
    new = bare.subset([4, 5])
    mask = data.labels >= 4
    result = count_correct(reloaded, data.features[mask, 0], data.labels[mask] - 4, new)
    assert result["total"] == 8
