"""DualView = CoOp soft view + λ_mi·symmetric InfoNCE(soft, hand) + a class-wise visual term (prototype
injection or intra-class feature mixup); each piece checked against an independent computation."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from promptlab.errors import UserError
from promptlab.methods.base import Batch
from promptlab.methods.coop.method import CoOp
from promptlab.methods.dualview.method import DualView, Prototypes, intra_class_mixup
from promptlab.methods.losses import symmetric_info_nce
from promptlab.train import TrainData, make_batch, train


def _batch(class_set, n=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    feats = F.normalize(torch.randn(n, class_set.hand_features.shape[1], generator=gen), dim=-1)
    return Batch(feats, torch.arange(n) % len(class_set))  # every class twice: mixup has partners


def _unit(*shape, seed):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_defaults():
    cfg = DualView.Config()
    assert issubclass(DualView, CoOp) and DualView.name == "dualview"
    assert (cfg.n_ctx, cfg.ctx_init, cfg.batch_size, cfg.lr, cfg.visual_aug, cfg.hand_view) == \
        (4, "a photo of a", 32, 0.002, "mixup", "clip80")
    assert cfg.prototype_source == "leave_one_out"


def test_info_nce_equals_explicit_log_softmax_loops():
    soft, hand, tau = _unit(5, 7, seed=1), _unit(5, 7, seed=2), 0.3
    C = len(soft)
    dot = lambda a, b: sum(float(x) * float(y) for x, y in zip(a, b))
    rows = cols = 0.0
    for c in range(C):  # soft c against every hand row, and hand c against every soft row
        s_row = [dot(soft[c], hand[k]) / tau for k in range(C)]
        s_col = [dot(soft[k], hand[c]) / tau for k in range(C)]
        rows += -(s_row[c] - math.log(sum(math.exp(v) for v in s_row)))
        cols += -(s_col[c] - math.log(sum(math.exp(v) for v in s_col)))
    expected = 0.5 * (rows / C + cols / C)
    assert abs(symmetric_info_nce(soft, hand, 1 / tau).item() - expected) < 1e-5
    # aligned views give a lower bound than mismatched ones
    assert symmetric_info_nce(hand, hand, 1 / tau) < symmetric_info_nce(soft, hand, 1 / tau)


def test_prototypes_are_the_per_class_mean_direction(class_set, separable_data):
    data = separable_data(class_set, n_per_class=3, views=2)
    data = TrainData(data.features * 3.0, data.labels)  # unnormalised inputs: each feature is normalised first
    protos = Prototypes(data, len(class_set)).all()
    for c in range(len(class_set)):
        rows = [data.features[n, v] / data.features[n, v].norm()
                for n in range(len(data.labels)) if data.labels[n] == c for v in range(data.features.shape[1])]
        mean = torch.stack(rows).mean(dim=0)
        torch.testing.assert_close(protos[c], mean / mean.norm(), rtol=1e-5, atol=1e-6)


def test_mixup_rows_are_same_class_convex_combinations():
    torch.manual_seed(0)
    feats, labels = _unit(10, 6, seed=3), torch.tensor([0, 1, 0, 2, 1, 0, 3, 2, 2, 4])  # 3 and 4 alone
    mixed, y, i, j, lam = intra_class_mixup(feats, labels, alpha=0.5)
    assert len(y) == 8 and torch.all((lam >= 0) & (lam <= 1))
    assert torch.all(labels[i] == labels[j]) and torch.all(i != j) and torch.equal(y, labels[i])
    for row, label in zip(mixed, y):  # independently: some same-class pair (a, b) and μ ∈ [0, 1] give the row
        members = [k for k in range(10) if labels[k] == label]
        best = float("inf")
        for a, b in itertools.permutations(members, 2):
            d = feats[a] - feats[b]  # grid over μ: normalise(μ·f_a + (1−μ)·f_b)
            grid = F.normalize(feats[b] + torch.linspace(0, 1, 2001)[:, None] * d, dim=-1)  # [2001, D]
            best = min(best, (grid - row).norm(dim=-1).min().item())
        assert best < 2e-3, f"row of class {int(label)} is not a mix of two rows of that class"
    none = intra_class_mixup(feats[:3], torch.tensor([0, 1, 2]), alpha=1.0)
    assert len(none[1]) == 0


def test_mixup_pairing_never_crosses_classes_and_follows_the_global_rng():
    feats = _unit(32, 6, seed=4)
    for seed in range(20):
        labels = torch.randint(5, (32,), generator=torch.Generator().manual_seed(seed))
        torch.manual_seed(seed)
        mixed, y, i, j, lam = intra_class_mixup(feats, labels, alpha=1.0)
        assert torch.all(labels[i] == labels[j]) and torch.all(i != j) and torch.equal(y, labels[i])
        counts = torch.bincount(labels, minlength=5)
        assert len(y) == int(counts[counts > 1].sum())  # every row with a same-class partner is an anchor
        torch.manual_seed(seed)
        assert torch.equal(intra_class_mixup(feats, labels, alpha=1.0)[0], mixed)  # seeded: reproducible


def test_untrained_inference_equals_coop_and_zero_shot(frozen_clip, class_set):
    method = DualView(DualView.Config(), frozen_clip, class_set)
    coop = CoOp(CoOp.Config(), frozen_clip, class_set)
    batch = _batch(class_set)
    with torch.no_grad():
        torch.testing.assert_close(method.logits(batch, class_set), coop.logits(batch, class_set))
        torch.testing.assert_close(method.text_features(class_set), class_set.hand_features, rtol=1e-5, atol=1e-5)


def _perturbed(cfg, clip, class_set):
    torch.manual_seed(0)
    method = DualView(cfg, clip, class_set)
    with torch.no_grad():
        method.ctx.add_(0.3 * torch.randn_like(method.ctx))
    return method


def _coop_features(method, class_set):
    """[C, D] the soft view computed by a plain CoOp holding the same ctx (not DualView's code)."""
    coop = CoOp(CoOp.Config(), method.clip, class_set)
    coop.ctx.data.copy_(method.ctx)
    return coop.text_features(class_set)


@pytest.mark.parametrize("hand_view", ["dataset", "clip7"])
def test_loss_is_ce_plus_nce_plus_prototype_term(frozen_clip, class_set, separable_data, hand_view):
    torch.manual_seed(0)
    cfg = DualView.Config(visual_aug="prototype", hand_view=hand_view, lam_mi=0.7, tau_mi=0.2, beta=0.5,
                          lam_proto=0.3, prototype_source="all")  # random batch rows: no row is a shot
    method = _perturbed(cfg, frozen_clip, class_set)
    data = separable_data(class_set)
    method.prepare(data, class_set)
    batch, tau = _batch(class_set, seed=1), frozen_clip.logit_scale
    with torch.no_grad():
        w = _coop_features(method, class_set)
        hand = class_set.hand_features if hand_view == "dataset" else class_set.ensembles[hand_view]
        ce = F.cross_entropy(tau * batch.features @ w.t(), batch.labels)
        s = w @ hand.t() / 0.2
        nce = 0.5 * (-torch.diag(s.log_softmax(1)).mean() - torch.diag(s.log_softmax(0)).mean())
        proto = F.normalize(F.normalize(data.features, dim=-1).mean(dim=1).view(6, 4, -1).mean(1), dim=-1)
        inj = F.normalize(w + 0.5 * proto, dim=-1)
        pce = F.cross_entropy(tau * batch.features @ inj.t(), batch.labels)
        loss, _ = method.loss(batch, class_set)
    torch.testing.assert_close(loss, ce + 0.7 * nce + 0.3 * pce, rtol=1e-5, atol=1e-5)


def test_leave_one_out_prototypes_never_contain_the_scored_image(frozen_clip, class_set, separable_data):
    """Rows of a training batch are scored against their own class's prototype built from the class's other
    shots only (every view of the scored image left out); other classes keep their full prototype."""
    data = separable_data(class_set, n_per_class=3, views=2, noise=0.3)
    method = _perturbed(DualView.Config(visual_aug="prototype", beta=0.5, lam_mi=0.0), frozen_clip, class_set)
    method.prepare(data, class_set)
    idx, views = torch.tensor([0, 4, 5, 9, 17]), torch.tensor([1, 0, 1, 1, 0])
    batch = make_batch(data, idx, views, need_patches=False)
    unit = F.normalize(data.features, dim=-1)  # [N, V, D]
    with torch.no_grad():
        w, tau = _coop_features(method, class_set), frozen_clip.logit_scale
        rows = []
        for b, n in enumerate(idx.tolist()):
            protos = []
            for c in range(len(class_set)):
                members = [k for k in range(len(data.labels)) if data.labels[k] == c and k != n]
                protos.append(F.normalize(unit[members].reshape(-1, unit.shape[-1]).mean(0), dim=0))
            injected = F.normalize(w + 0.5 * torch.stack(protos), dim=-1)
            rows.append(tau * injected @ batch.features[b])
        want = F.cross_entropy(torch.stack(rows), batch.labels)
        ce = F.cross_entropy(tau * batch.features @ w.t(), batch.labels)
        loss, _ = method.loss(batch, class_set)
        torch.testing.assert_close(loss - ce, want, rtol=1e-5, atol=1e-5)
        # the scored image is much closer to the full prototype (it is in it) than to the leave-one-out one
        loo = method.prototypes.leave_one_out(batch.features, batch.labels)
        full = method.prototypes.all()[batch.labels]
        assert ((batch.features * full).sum(-1) > (batch.features * loo).sum(-1)).all()


def test_loss_is_ce_plus_nce_plus_mixup_term(frozen_clip, class_set):
    method = _perturbed(DualView.Config(visual_aug="mixup", lam_mi=0.5, lam_mix=0.4), frozen_clip, class_set)
    batch, tau = _batch(class_set, seed=2), frozen_clip.logit_scale
    with torch.no_grad():
        w, hand = _coop_features(method, class_set), class_set.ensembles["clip80"]  # the default hand view
        torch.manual_seed(7)
        mixed, y, *_ = intra_class_mixup(batch.features, batch.labels, alpha=1.0)  # the same draws
        assert len(y) == len(batch.labels)  # every class appears twice in _batch
        ce = F.cross_entropy(tau * batch.features @ w.t(), batch.labels)
        nce = symmetric_info_nce(w, hand, 1 / 0.07)  # checked against explicit loops above
        mce = F.cross_entropy(tau * mixed @ w.t(), y)
        torch.manual_seed(7)
        loss, _ = method.loss(batch, class_set)
    torch.testing.assert_close(loss, ce + 0.5 * nce + 0.4 * mce, rtol=1e-5, atol=1e-5)


def test_prototype_mode_requires_prepare_and_is_not_saved(frozen_clip, class_set, separable_data):
    method = DualView(DualView.Config(visual_aug="prototype"), frozen_clip, class_set)
    with pytest.raises(UserError, match="prepare"):
        method.loss(_batch(class_set), class_set)
    method.prepare(separable_data(class_set), class_set)
    assert set(method.learned_state()) == {"ctx"}


@pytest.mark.parametrize("visual_aug", ["prototype", "mixup", "none"])
def test_gradients_reach_only_ctx(frozen_clip, class_set, separable_data, visual_aug):
    torch.manual_seed(0)
    method = DualView(DualView.Config(visual_aug=visual_aug), frozen_clip, class_set)
    method.prepare(separable_data(class_set), class_set)
    assert [n for n, _ in method.named_parameters()] == ["ctx"]
    loss, _ = method.backward(_batch(class_set), class_set)
    assert torch.isfinite(loss) and method.ctx.grad is not None and method.ctx.grad.abs().sum() > 0
    assert all(p.grad is None for p in frozen_clip.loaded.model.parameters())
    assert not class_set.hand_features.requires_grad and set(method.learned_state()) == {"ctx"}


@pytest.mark.parametrize("visual_aug", ["prototype", "mixup", "none"])
def test_a_few_training_steps_lower_the_loss(frozen_clip, class_set, separable_data, visual_aug):
    data = separable_data(class_set, n_per_class=8)
    torch.manual_seed(0)
    method = DualView(DualView.Config(visual_aug=visual_aug), frozen_clip, class_set)
    cfg = method.cfg.model_copy(update={"epochs": 4, "batch_size": 16, "warmup_epochs": 0, "lr": 0.01})
    history = train(method, data, class_set, cfg, seed=1)
    assert history[-1]["loss"] < history[0]["loss"]
