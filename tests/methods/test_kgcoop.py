import pytest
"""KgCoOp = CoOp's cross-entropy + λ·(1 − mean_c cos(w_c, w_c^hand)), checked against an independent
computation; the class set's template is "a photo of a {}.", the same text as KgCoOp's default ctx init."""

import torch
import torch.nn.functional as F

from promptlab.methods.base import Batch
from promptlab.methods.coop.method import CoOp
from promptlab.methods.kgcoop.method import KgCoOp
from promptlab.train import train


def _batch(class_set, n=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    feats = F.normalize(torch.randn(n, class_set.hand_features.shape[1], generator=gen), dim=-1)
    return Batch(feats, torch.randint(len(class_set), (n,), generator=gen))


def _expected(method, batch, class_set):
    """CE and the KG term computed without KgCoOp's code: a CoOp holding the same ctx, torch's cosine."""
    coop = CoOp(CoOp.Config(), method.clip, class_set)
    with torch.no_grad():
        coop.ctx.copy_(method.ctx)
        w = coop.text_features(class_set)  # [C, D]
        ce = F.cross_entropy(method.clip.logit_scale * batch.features @ w.t(), batch.labels)
        kg = 1 - F.cosine_similarity(w, class_set.hand_features, dim=-1).mean()
    return ce, kg


def test_defaults_are_the_papers_base_to_new_settings():
    cfg = KgCoOp.Config()
    assert KgCoOp.name == "kgcoop" and issubclass(KgCoOp, CoOp)
    assert (cfg.n_ctx, cfg.ctx_init, cfg.batch_size, cfg.epochs, cfg.lr, cfg.lam) == \
        (4, "a photo of a", 128, 100, 0.002, 8.0)


def test_at_init_the_knowledge_term_vanishes_and_the_loss_is_plain_ce(frozen_clip, class_set):
    method = KgCoOp(KgCoOp.Config(), frozen_clip, class_set)
    batch = _batch(class_set)
    with torch.no_grad():
        loss, logits = method.loss(batch, class_set)
        gap = method.knowledge_gap(method.text_features(class_set), class_set.hand_features)
    assert abs(gap.item()) < 1e-5
    torch.testing.assert_close(loss, F.cross_entropy(logits, batch.labels), rtol=0, atol=8.0 * 1e-5)


def test_after_perturbing_ctx_the_loss_is_ce_plus_lambda_gap(frozen_clip, class_set):
    torch.manual_seed(0)
    method = KgCoOp(KgCoOp.Config(lam=3.0), frozen_clip, class_set)
    with torch.no_grad():
        method.ctx.add_(0.5 * torch.randn_like(method.ctx))
    batch = _batch(class_set, seed=1)
    ce, kg = _expected(method, batch, class_set)
    assert kg.item() > 1e-3  # the perturbation really moved the class features away from the hand ones
    with torch.no_grad():
        loss, _ = method.loss(batch, class_set)
    torch.testing.assert_close(loss, ce + 3.0 * kg, rtol=1e-5, atol=1e-5)


def test_gradients_reach_only_ctx(frozen_clip, class_set):
    torch.manual_seed(0)
    method = KgCoOp(KgCoOp.Config(), frozen_clip, class_set)
    with torch.no_grad():
        method.ctx.add_(0.5 * torch.randn_like(method.ctx))
    assert [n for n, _ in method.named_parameters()] == ["ctx"]
    loss, _ = method.backward(_batch(class_set), class_set)
    assert torch.isfinite(loss)
    assert method.ctx.grad is not None and method.ctx.grad.abs().sum() > 0
    assert all(p.grad is None for p in frozen_clip.loaded.model.parameters())
    assert not class_set.hand_features.requires_grad
    assert set(method.learned_state()) == {"ctx"}


def test_one_training_step_is_sgd_on_ce_plus_lambda_times_the_gap(frozen_clip, class_set, separable_data):
    """The loop's first step equals SGD (momentum buffer = grad, + weight decay) on the loss written out
    here from CoOp's class features: CE(τ f Wᵀ) + λ (1 − mean_c cos(w_c, w_c^hand))."""
    import torch.nn.functional as F

    data = separable_data(class_set, n_per_class=2, views=1)  # 12 images = one batch
    torch.manual_seed(0)
    method = KgCoOp(KgCoOp.Config(), frozen_clip, class_set)
    cfg = method.cfg.model_copy(update={"epochs": 1, "batch_size": 12, "warmup_epochs": 0, "lr": 0.01})
    ctx0 = method.ctx.detach().clone()
    ref = CoOp(CoOp.Config(), frozen_clip, class_set)
    with torch.no_grad():
        ref.ctx.copy_(ctx0)
    w = ref.text_features(class_set)
    feats = F.normalize(data.features[:, 0], dim=-1)
    ce = F.cross_entropy(frozen_clip.logit_scale * feats @ w.t(), data.labels)
    loss = ce + cfg.lam * (1 - (w * class_set.hand_features).sum(-1).mean())
    loss.backward()
    expected = ctx0 - cfg.lr * (ref.ctx.grad + cfg.weight_decay * ctx0)
    history = train(method, data, class_set, cfg, seed=1)
    assert history[0]["loss"] == pytest.approx(loss.item(), rel=1e-5)
    assert torch.allclose(method.ctx.detach(), expected, atol=1e-6)
    assert not torch.allclose(expected, ctx0, atol=1e-6)  # the step moved the context


def test_the_teacher_table_is_coops_but_for_dtd():
    """templates.yaml copies the official KgCoOp table: every id is ours, and it differs from the datasets'
    own (CoOp's) templates on DTD alone, with the official DTD prompt."""
    from promptlab.data.registry import BUILTIN
    from promptlab.methods.kgcoop.method import TEACHER_TEMPLATES

    assert set(TEACHER_TEMPLATES) <= set(BUILTIN) and len(TEACHER_TEMPLATES) == 15
    assert {k for k, t in TEACHER_TEMPLATES.items() if t != BUILTIN[k].template} == {"dtd"}
    assert (TEACHER_TEMPLATES["dtd"], BUILTIN["dtd"].template) == ("a photo of a {}, a type of texture.", "{} texture.")


def test_on_dtd_the_knowledge_term_uses_kgcoops_own_template(frozen_clip, class_set):
    import dataclasses

    dtd = dataclasses.replace(class_set, template="{} texture.", dataset="dtd")
    method = KgCoOp(KgCoOp.Config(), frozen_clip, dtd)
    batch = _batch(dtd)
    with torch.no_grad():
        official = frozen_clip.text.encode_texts([f"a photo of a {n}, a type of texture." for n in dtd.names])
        w = method.text_features(dtd)
        ce = F.cross_entropy(frozen_clip.logit_scale * batch.features @ w.t(), batch.labels)
        kg = 1 - F.cosine_similarity(w, official, dim=-1).mean()
        loss, _ = method.loss(batch, dtd)
    torch.testing.assert_close(loss, ce + 8.0 * kg, rtol=1e-5, atol=1e-6)
    assert abs(float(kg) - float(1 - F.cosine_similarity(w, dtd.hand_features, dim=-1).mean())) > 1e-4
    # the subset of base classes keeps its dataset; a dataset the table does not list keeps its own template
    assert dtd.subset([0, 1]).dataset == "dtd"
    assert method.teacher_features(dataclasses.replace(dtd, dataset="synthetic")) is dtd.hand_features
    assert method.teacher_features(dataclasses.replace(class_set, dataset="caltech101")) is class_set.hand_features


def test_the_logit_scale_is_exp_unclamped_like_the_official_code(loaded_clip):
    """OpenAI's checkpoints store ln τ = 4.6052: the official code's logit_scale.exp() is 100.003, not 100."""
    import copy

    from promptlab.clip.model import LoadedCLIP
    from promptlab.methods.base import FrozenCLIP

    model = copy.deepcopy(loaded_clip.model)
    with torch.no_grad():
        model.logit_scale.fill_(4.6052)
    clip = FrozenCLIP(LoadedCLIP(model, loaded_clip.preprocess, loaded_clip.tokenizer, loaded_clip.name))
    assert clip.logit_scale == float(torch.tensor(4.6052).exp()) and clip.logit_scale > 100.002
    assert FrozenCLIP(loaded_clip).logit_scale == float(loaded_clip.model.logit_scale.exp())
