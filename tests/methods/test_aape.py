"""AAPE: the aggregator's masked attention, the reward and distillation terms and the instance-conditioned
classifier, each checked against an independent (loop / explicit-tensor) computation on small tensors; and
the mechanisms act: attention is not uniform on separable data, the reward has no same-class negatives, the
gated AAPE moves classes differently, every term's gradient reaches what it trains."""

import dataclasses
import math

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
        (0.02, 32, 0.1, 1.0, "gate", "l2", "contrastive")
    assert (cfg.reward_negatives, cfg.attn_scale, cfg.learn_attn_scale) == ("other_classes", None, True)


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
        kappa = method.attn_log_scale.detach().exp()
        parts = []
        for h in range(heads):
            sl = slice(h * e, (h + 1) * e)
            cos = torch.stack([F.cosine_similarity(k[i, sl], q[sl], dim=0) for i in range(len(t))])
            alpha = torch.softmax(kappa * cos, dim=0)  # [S_y]
            parts.append(alpha @ v[:, sl])
        torch.testing.assert_close(got[b], torch.cat(parts), rtol=1e-5, atol=1e-6)
    assert got.shape == (5, d)


@pytest.mark.parametrize("scale", [None, 3.0])
def test_contrastive_reward_is_a_symmetric_infonce_without_same_class_negatives(frozen_clip, class_set, scale):
    gen = torch.Generator().manual_seed(3)
    f, s = torch.randn(6, 128, generator=gen), torch.randn(6, 128, generator=gen)
    labels = torch.tensor([0, 1, 0, 2, 1, 3])
    rho = scale or frozen_clip.logit_scale
    cos = torch.tensor([[F.cosine_similarity(s[i], f[j], dim=0) for j in range(6)] for i in range(6)])
    for negatives in ("all", "other_classes"):
        method = _aape(frozen_clip, class_set, reward_scale=scale, reward_negatives=negatives)
        keep = torch.tensor([[j == i or negatives == "all" or bool(labels[j] != labels[i]) for j in range(6)]
                             for i in range(6)])  # symmetric
        s_to_f = -torch.stack([torch.log_softmax(rho * cos[i][keep[i]], 0)[int(keep[i, :i].sum())]
                               for i in range(6)]).mean()  # row i: positive f_i among its kept images
        f_to_s = -torch.stack([torch.log_softmax(rho * cos[:, j][keep[:, j]], 0)[int(keep[:j, j].sum())]
                               for j in range(6)]).mean()
        torch.testing.assert_close(method.reward_loss(f, s, labels), 0.5 * (s_to_f + f_to_s), rtol=1e-5, atol=1e-5)
    # a batch of one class, whose images share one summary (its descriptions): nothing to contrast, the reward
    # is 0; with same-class negatives it can never fall below log B (a row's B equal scores give 1/B at best)
    same, one = torch.zeros(6, dtype=torch.long), s[:1].expand(6, -1)
    assert _aape(frozen_clip, class_set).reward_loss(f, one, same).abs() < 1e-6
    assert _aape(frozen_clip, class_set, reward_negatives="all").reward_loss(f, one, same) > 0.5 * math.log(6)
    score = _aape(frozen_clip, class_set, reward="score").reward_loss(f, s, labels)
    torch.testing.assert_close(score, 1 - cos.diagonal().mean(), rtol=1e-5, atol=1e-6)


def _toy_sentences(class_set, per_class=4, seed=0):
    """A ClassSet whose classes have `per_class` random unit sentences each, and images that are noisy
    copies of one sentence: which sentence an image matches is separable."""
    gen = torch.Generator().manual_seed(seed)
    c, d = len(class_set), class_set.hand_features.shape[1]
    sentences = F.normalize(torch.randn(c * per_class, d, generator=gen), dim=-1)
    labels = torch.arange(c).repeat_interleave(per_class)
    toy = dataclasses.replace(class_set, sentences=sentences, sentence_labels=labels)
    pick = torch.arange(len(sentences))  # one image per sentence
    feats = F.normalize(sentences[pick] + 0.3 * torch.randn(len(pick), d, generator=gen) / d ** 0.5, dim=-1)
    return toy, feats, labels[pick], pick


def test_attention_on_separable_data_is_not_uniform(frozen_clip, class_set):
    toy, feats, labels, pick = _toy_sentences(class_set)
    method = _aape(frozen_clip, class_set)
    with torch.no_grad():
        attn = method.attention(feats, labels, toy)[:, 0]  # [B, S]
    own = attn[torch.arange(len(pick)), pick]  # weight on the sentence the image was made from
    assert own.min() > 0.9  # uniform over a class's 4 sentences would give 0.25
    entropy = -(attn * attn.clamp_min(1e-30).log()).sum(-1)
    assert entropy.max() < 0.5 * math.log(4)
    # the first reading (q·k/√D on unit vectors, no temperature) is uniform to 1e-3
    flat = _aape(frozen_clip, class_set, attn_scale=1 / 128 ** 0.5, learn_attn_scale=False)
    with torch.no_grad():
        assert (flat.attention(feats, labels, toy)[:, 0].max(-1).values - 0.25).abs().max() < 0.03


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


@pytest.mark.parametrize("combine", ["gate", "add", "concat"])
def test_logits_match_explicit_instance_weights(frozen_clip, class_set, combine):
    method = _aape(frozen_clip, class_set, perturb=0.05, combine=combine)
    batch = _batch(n=4)
    with torch.no_grad():
        got = method.logits(batch, class_set)
        a, t = method.generator(batch.features), class_set.hand_features  # [B, D], [C, D]
        if combine == "gate":
            w = t[None] * (1 + a @ method.proj.t())[:, None]  # [B, C, D]
        elif combine == "add":
            w = t[None] + (a @ method.proj.t())[:, None]  # [B, C, D]
        else:
            w = torch.cat([t[None].expand(4, -1, -1), a[:, None].expand(-1, len(t), -1)], -1) @ method.proj.t()
        want = frozen_clip.logit_scale * torch.einsum("bd,bcd->bc", batch.features, F.normalize(w, dim=-1))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert (a[0] - a[1]).abs().max() > 1e-4  # the weights really are per image


@pytest.mark.parametrize("template,combine", [("dataset", "gate"), ("clip80", "gate"), ("dataset", "add")])
def test_untrained_gate_and_add_are_zero_shot(frozen_clip, class_set, template, combine):
    method = _aape(frozen_clip, class_set, template=template, combine=combine)
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


@pytest.mark.parametrize("combine", ["gate", "add", "concat"])
def test_gradients_reach_only_the_methods_parameters(frozen_clip, class_set, combine):
    method = _aape(frozen_clip, class_set, perturb=0.01, combine=combine, value_proj=True)
    names = {n for n, _ in method.named_parameters()}
    assert names == {"w_q", "w_k", "w_v", "attn_log_scale", "proj", "generator.0.weight", "generator.0.bias",
                     "generator.2.weight", "generator.2.bias"} == set(method.learned_state())
    loss, logits = method.backward(_batch(), class_set)
    assert torch.isfinite(loss) and logits.shape == (8, 6)
    for n, p in method.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n
    assert all(p.grad is None for p in frozen_clip.loaded.model.parameters())
    assert not class_set.sentences.requires_grad and not class_set.hand_features.requires_grad


def test_the_gated_aape_moves_each_class_differently(frozen_clip, class_set):
    """Before normalisation, `add` shifts every class's score f·w_c by the same f·u (only the norm can re-rank);
    `gate` shifts class c by f·(t_c ⊙ G a), which differs per class, and re-ranks classes."""
    batch = _batch(n=4)
    shift = {}
    for combine in ("gate", "add"):
        method = _aape(frozen_clip, class_set, combine=combine)
        with torch.no_grad():
            method.proj.normal_(0, 3.0)
            a, t = method.generator(batch.features), class_set.hand_features
            u = a @ method.proj.t()  # [B, D]
            w = t[None] * (1 + u[:, None]) if combine == "gate" else t[None] + u[:, None]  # [B, C, D]
            shift[combine] = torch.einsum("bd,bcd->bc", batch.features, w) - batch.features @ t.t()  # [B, C]
            ranks = method.logits(batch, class_set).argsort(-1)
        if combine == "gate":
            assert not torch.equal(ranks, (batch.features @ t.t()).argsort(-1))
    assert shift["add"].std(dim=1).max() < 1e-5 and shift["gate"].std(dim=1).min() > 1e-3


def test_every_term_reaches_what_it_trains_at_init_and_after_a_step(frozen_clip, class_set, separable_data):
    """Default init (identity W, G = 0): the reward trains the aggregator and κ, distillation the generator,
    CE trains G at once and the generator from the first step on (G = 0 passes nothing before)."""
    data = separable_data(class_set, n_per_class=2)
    batch = Batch(F.normalize(data.features[:, 0], dim=-1), data.labels)
    method = _aape(frozen_clip, class_set)
    opt = torch.optim.SGD(method.parameters(), lr=0.1)
    aggregator = ["w_q", "w_k", "attn_log_scale"]
    generator = [f"generator.{n}" for n in ("0.weight", "0.bias", "2.weight", "2.bias")]
    for step in range(2):
        feats = batch.features
        summary = method.summary(feats, batch.labels, class_set)
        aape = method.generator(feats)
        terms = {"reward": (method.reward_loss(feats, summary, batch.labels), aggregator),
                 "distill": (method.distill_loss(aape, summary), generator),
                 "ce": (F.cross_entropy(method.logits_from(feats, aape, class_set.hand_features), batch.labels),
                        ["proj"] + (generator if step else []))}
        for term, (value, meant) in terms.items():
            grads = torch.autograd.grad(value, [dict(method.named_parameters())[n] for n in meant],
                                        retain_graph=True, allow_unused=True)
            for n, g in zip(meant, grads):
                assert g is not None and g.abs().max() > 0, (term, step, n)
        opt.zero_grad()
        method.backward(batch, class_set)
        opt.step()


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
