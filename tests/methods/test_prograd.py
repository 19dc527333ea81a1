"""ProGrad's update, checked against gradients computed independently here (two separate forward passes, the
KL from torch's kl_div): projected when CE and KL(zero-shot ‖ prompt) conflict, untouched when they agree."""

import pytest
import torch
import torch.nn.functional as F

from promptlab.methods.base import Batch
from promptlab.methods.coop.method import CoOp
from promptlab.methods.prograd.method import ProGrad
from promptlab.train import train


def _independent_grads(method, batch, class_set, temperature):
    """(g_ce, g_kl) flat [P]; KL(p_zs ‖ p_prompt) = kl_div(log p_prompt, p_zs) (torch's target-first KL)."""
    ce = F.cross_entropy(method.logits(batch, class_set), batch.labels)
    (g_ce,) = torch.autograd.grad(ce, method.ctx)
    zs = method.clip.logit_scale * batch.features @ class_set.hand_features.t()  # [B, C]
    log_p_prompt = F.log_softmax(method.logits(batch, class_set) / temperature, dim=-1)
    kl = F.kl_div(log_p_prompt, F.softmax(zs / temperature, dim=-1), reduction="batchmean")
    (g_kl,) = torch.autograd.grad(kl, method.ctx)
    return g_ce.flatten(), g_kl.flatten()


def _find_batch(frozen_clip, class_set, conflict, temperature=1.0, tries=20):
    """Perturbed ctx + a random batch whose labels disagree (conflict) or agree with zero-shot CLIP's
    predictions; seeds are searched until ⟨g_ce, g_kl⟩ has the wanted sign."""
    for seed in range(tries):
        torch.manual_seed(seed)
        method = ProGrad(ProGrad.Config(kl_temperature=temperature), frozen_clip, class_set)
        with torch.no_grad():
            method.ctx.add_(0.3 * torch.randn_like(method.ctx))
        feats = F.normalize(torch.randn(8, class_set.hand_features.shape[1]), dim=-1)
        zs = feats @ class_set.hand_features.t()  # [8, C]
        labels = zs.argmin(dim=-1) if conflict else zs.argmax(dim=-1)
        batch = Batch(feats, labels)
        g_ce, g_kl = _independent_grads(method, batch, class_set, temperature)
        if (torch.dot(g_ce.double(), g_kl.double()) < 0) == conflict:
            return method, batch, g_ce, g_kl
    pytest.fail(f"no seed in {tries} gave a batch with conflict={conflict}")


def test_defaults_and_name():
    cfg = ProGrad.Config()
    assert ProGrad.name == "prograd" and issubclass(ProGrad, CoOp)
    assert (cfg.n_ctx, cfg.ctx_init, cfg.batch_size, cfg.epochs, cfg.lr, cfg.lam, cfg.kl_temperature) == \
        (4, "a photo of a", 32, 100, 0.002, 1.0, 1.0)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_conflicting_gradient_is_projected_off_the_kl_direction(frozen_clip, class_set, temperature):
    method, batch, g_ce, g_kl = _find_batch(frozen_clip, class_set, conflict=True, temperature=temperature)
    loss, logits = method.backward(batch, class_set)
    g = method.ctx.grad.flatten().double()
    a, b = g_ce.double(), g_kl.double()
    expected = a - method.cfg.lam * (torch.dot(a, b) / torch.dot(b, b)) * b
    torch.testing.assert_close(g, expected, rtol=1e-4, atol=1e-5 * expected.abs().max().item())
    # the applied update never works against the zero-shot knowledge (λ = 1: exactly orthogonal)
    assert torch.dot(g, b) >= -1e-6 * g.norm() * b.norm()
    assert not torch.allclose(g, a)  # the projection really changed the update
    torch.testing.assert_close(loss, F.cross_entropy(logits, batch.labels))  # returned loss: the CE


def test_agreeing_gradient_is_the_plain_ce_gradient(frozen_clip, class_set):
    method, batch, g_ce, g_kl = _find_batch(frozen_clip, class_set, conflict=False)
    assert torch.dot(g_ce.double(), g_kl.double()) >= 0
    method.backward(batch, class_set)
    assert torch.equal(method.ctx.grad.flatten(), g_ce)


def test_only_ctx_gets_gradients(frozen_clip, class_set):
    method, batch, _, _ = _find_batch(frozen_clip, class_set, conflict=True)
    assert [n for n, _ in method.named_parameters()] == ["ctx"]
    method.backward(batch, class_set)
    assert method.ctx.grad is not None and method.ctx.grad.abs().sum() > 0
    assert all(p.grad is None for p in frozen_clip.loaded.model.parameters())
    assert not class_set.hand_features.requires_grad and batch.features.grad is None
    assert set(method.learned_state()) == {"ctx"}


def test_one_training_step_applies_the_projected_gradient(frozen_clip, class_set, separable_data):
    """The loop's first step equals SGD on g written out here: g_ce and g_kl by autograd on CoOp's logits and
    zero-shot's, g = g_ce − λ (⟨g_ce, g_kl⟩ / ‖g_kl‖²) g_kl when they conflict, else g_ce."""
    import torch.nn.functional as F

    data = separable_data(class_set, n_per_class=2, views=1)  # 12 images = one batch
    torch.manual_seed(0)
    method = ProGrad(ProGrad.Config(), frozen_clip, class_set)
    with torch.no_grad():
        method.ctx.add_(0.3 * torch.randn_like(method.ctx))  # away from zero-shot, so g_kl is not ~0
    ctx0 = method.ctx.detach().clone()
    cfg = method.cfg.model_copy(update={"epochs": 1, "batch_size": 12, "warmup_epochs": 0, "lr": 0.01})
    ref = CoOp(CoOp.Config(), frozen_clip, class_set)
    with torch.no_grad():
        ref.ctx.copy_(ctx0)
    feats = F.normalize(data.features[:, 0], dim=-1)
    logits = frozen_clip.logit_scale * feats @ ref.text_features(class_set).t()
    zs = frozen_clip.logit_scale * feats @ class_set.hand_features.t()
    ce = F.cross_entropy(logits, data.labels)
    kl = F.kl_div(F.log_softmax(logits, -1), F.log_softmax(zs, -1), log_target=True, reduction="batchmean")
    g_ce = torch.autograd.grad(ce, ref.ctx, retain_graph=True)[0].flatten()
    g_kl = torch.autograd.grad(kl, ref.ctx)[0].flatten()
    dot = g_ce @ g_kl
    g = g_ce - cfg.lam * dot / (g_kl @ g_kl) * g_kl if dot < 0 else g_ce
    expected = ctx0 - cfg.lr * (g.view_as(ctx0) + cfg.weight_decay * ctx0)
    history = train(method, data, class_set, cfg, seed=1)
    assert history[0]["loss"] == pytest.approx(ce.item(), rel=1e-5)
    assert torch.allclose(method.ctx.detach(), expected, atol=1e-6)
