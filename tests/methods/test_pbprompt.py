"""PBPrompt: the KL, the reparameterised latents, the transport term and the prompt path checked against
independent computations; the Bayesian mechanism acts (every loss term trains the posterior and the generator
from init, samples carry their class, prompt-token outputs see their class); gradients stay in the method;
training lowers the loss; new classes score."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from promptlab.errors import UserError
from promptlab.methods.base import Batch
from promptlab.methods.pbprompt.method import PBPrompt, gaussian_kl
from promptlab.train import train



def _method(frozen_clip, class_set, seed=0, **kw):
    torch.manual_seed(seed)
    return PBPrompt(PBPrompt.Config(**{"beta_kl": 0.1, **kw}), frozen_clip, class_set)


def _perturb(method, scale=0.3, seed=1):
    """Move every parameter off its (partly zero) init, so all paths carry signal."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in method.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[-1]))


def _batch(class_set, n=6, seed=0, patches=16):
    gen = torch.Generator().manual_seed(seed)
    d = class_set.hand_features.shape[1]
    feats = F.normalize(torch.randn(n, d, generator=gen), dim=-1)
    return Batch(feats, torch.randint(len(class_set), (n,), generator=gen), torch.randn(n, patches, d, generator=gen))


def test_kl_is_the_closed_form_and_matches_torch_distributions():
    gen = torch.Generator().manual_seed(0)
    mu, e = torch.randn(5, 7, generator=gen, dtype=torch.float64), torch.randn(5, 7, generator=gen, dtype=torch.float64)
    sigma = torch.rand(5, 7, generator=gen, dtype=torch.float64) + 0.2
    s = 0.7
    closed = sum(math.log(s / sigma[c, d]) + (sigma[c, d] ** 2 + (mu[c, d] - e[c, d]) ** 2) / (2 * s * s) - 0.5
                 for c in range(5) for d in range(7)) / 5  # mean over classes of the per-class sum over dims
    got = gaussian_kl(mu, sigma, e, s)
    assert abs(got.mean().item() - float(closed)) < 1e-10
    torch.testing.assert_close(got, kl_divergence(Normal(mu, sigma), Normal(e, s)).sum(dim=-1))


def test_loss_is_nll_plus_beta_kl_when_transport_is_off(frozen_clip, class_set):
    m = _method(frozen_clip, class_set, transport="none", beta_kl=0.5, stochastic=False)
    _perturb(m)
    batch = _batch(class_set)
    with torch.no_grad():  # deterministic: r = μ, no KL; the loss is the CE of the mean-latent classifier
        loss, log_probs = m.loss(batch, class_set)
        logits = frozen_clip.logit_scale * batch.features @ m.text_features(class_set).t()
    torch.testing.assert_close(loss, F.cross_entropy(logits, batch.labels), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(log_probs, logits.log_softmax(-1), rtol=1e-5, atol=1e-5)


def test_sampled_latents_have_the_posterior_mean_and_variance(frozen_clip, class_set):
    m = _method(frozen_clip, class_set, train_samples=4000, transport="none")
    _perturb(m)
    captured = {}
    original = m.encode
    m.encode = lambda classes, r: (captured.setdefault("r", r), original(classes, r[:1]))[1]
    with torch.no_grad():
        m.loss(_batch(class_set), class_set)
        mu, sigma = m.posterior(m.class_embedding(class_set))
    r = captured["r"]  # [S, C, D]
    assert r.shape == (4000, len(class_set), mu.shape[1]) and sigma.std() > 0.01 * sigma.mean()  # σ varies by dim
    z = (r.mean(0) - mu) / (sigma / math.sqrt(4000))  # standardised error of the sample mean
    assert z.abs().max() < 5.5
    torch.testing.assert_close(r.var(0) / sigma**2, torch.ones_like(sigma), rtol=0, atol=0.16)


def test_transport_term_equals_an_independent_ct_and_ot(frozen_clip, class_set):
    m = _method(frozen_clip, class_set, train_samples=2, tau_ct=0.2)
    _perturb(m)
    batch = _batch(class_set, n=3, patches=5)
    with torch.no_grad():
        w, g = m.encode(class_set, torch.randn(2, len(class_set), frozen_clip.embed_dim))
        logits = frozen_clip.logit_scale * torch.einsum("bd,scd->sbc", batch.features, w)
        ct = m.transport_term(batch, g, logits)
    n_tok = m.cfg.n_ctx
    total = 0.0
    for s in range(2):
        for b in range(3):
            p = logits[s, b].softmax(-1)
            toks = [(F.normalize(g[s, c, l], dim=0), p[c].item() / n_tok) for c in range(len(class_set))
                    for l in range(n_tok)]
            us = [F.normalize(u, dim=0) for u in batch.patches[b]]
            cos = torch.tensor([[float(u @ t) for t, _ in toks] for u in us], dtype=torch.float64)
            wt = torch.tensor([x for _, x in toks], dtype=torch.float64)
            fwd = (wt * torch.exp(cos / 0.2)) / (wt * torch.exp(cos / 0.2)).sum(1, keepdim=True)
            bwd = torch.exp(cos / 0.2) / torch.exp(cos / 0.2).sum(0, keepdim=True)
            total += ((fwd * (1 - cos)).sum(1).mean() + (wt * (bwd * (1 - cos)).sum(0)).sum()).item()
    assert abs(ct.item() - total / 6) < 1e-4
    m.cfg = m.cfg.model_copy(update={"transport": "ot", "ot_eps": 0.1, "ot_iters": 200})
    with torch.no_grad():
        ot = m.transport_term(batch, g, logits)
    assert 0 < ot.item() < 2  # a mean of ⟨P, 1 − cos⟩ with total mass 1


def test_defaults_are_the_paper_style_reading(frozen_clip, class_set, separable_data):
    cfg = PBPrompt.Config()
    assert (cfg.inference, cfg.eval_samples, cfg.class_token_position, cfg.prior_std, cfg.beta_kl) == \
        ("sample", 20, "front", None, None)
    m = PBPrompt(cfg, frozen_clip, class_set)
    assert m.prior_std == pytest.approx(1 / math.sqrt(frozen_clip.embed_dim))  # σ0 on the unit e_c's scale
    with pytest.raises(UserError, match="beta_kl"):  # 1/shots is only known from the shots
        m.loss(_batch(class_set), class_set)
    m.prepare(separable_data(class_set, n_per_class=8), class_set)
    assert m.kl_weight == pytest.approx(1 / 8)  # C / N = 6 / 48: the per-image ELBO weight
    _, sigma = m.posterior(m.class_embedding(class_set))
    torch.testing.assert_close(sigma.mean(), torch.tensor(m.prior_std), rtol=0.05, atol=0)  # σ starts at σ0


@pytest.mark.parametrize("position", ["front", "end"])
def test_prompt_layout_places_the_class_name(frozen_clip, class_set, position):
    """With the generator's output layer at zero the prompt is the text "{name} a photo of a." (front) or
    "a photo of a {name}." (end): the gathered sequence equals the tokenizer's own."""
    m = _method(frozen_clip, class_set, class_token_position=position)
    with torch.no_grad():
        m.generator.out.weight.zero_()
        w, _ = m.encode(class_set, torch.zeros(1, len(class_set), frozen_clip.embed_dim))
    text = [f"{n} a photo of a." if position == "front" else f"a photo of a {n}." for n in class_set.names]
    torch.testing.assert_close(w[0], frozen_clip.text.encode_texts(text), rtol=0, atol=1e-5)


def _term_losses(m, batch, classes):
    """Each loss term of m.loss separately (same sampled latents), from the method's own pieces."""
    e = m.class_embedding(classes)
    mu, sigma = m.posterior(e)
    r = mu + sigma * torch.randn(1, *mu.shape)
    w, g = m.encode(classes, r)
    logits = m.clip.logit_scale * torch.einsum("bd,scd->sbc", batch.features, w)
    return {"nll": F.cross_entropy(logits[0], batch.labels), "kl": m.kl_term(mu, sigma, e),
            "transport": m.transport_term(batch, g, logits)}


MEANT = {"nll": ("posterior", "generator"), "kl": ("posterior",), "transport": ("posterior", "generator")}


@pytest.mark.parametrize("term", sorted(MEANT))
def test_every_loss_term_trains_the_posterior_and_generator_from_init(frozen_clip, class_set, term):
    """No zero-initialised layer blocks a path: at init and after an SGD step, each term gives non-zero
    gradients to every tensor of the modules it is meant to train."""
    m = _method(frozen_clip, class_set)
    batch = _batch(class_set)
    opt = torch.optim.SGD(m.parameters(), lr=0.01)
    for step in range(2):
        opt.zero_grad(set_to_none=True)
        torch.manual_seed(step)
        _term_losses(m, batch, class_set)[term].backward()
        for module in MEANT[term]:
            for name, p in getattr(m, module).named_parameters():
                assert p.grad is not None and p.grad.abs().max() > 0, (term, step, f"{module}.{name}")
        opt.step()


def test_samples_of_a_class_are_closer_to_each_other_than_to_other_classes(frozen_clip, class_set):
    """σ0 = 1/√D: sampled latents keep their class (with N(e_c, I) they are near-orthogonal noise)."""
    m = _method(frozen_clip, class_set)
    with torch.no_grad():
        mu, sigma = m.posterior(m.class_embedding(class_set))
        r = F.normalize(mu + sigma * torch.randn(200, *mu.shape), dim=-1)  # [S, C, D]
    cos = torch.einsum("scd,tkd->sctk", r[:100], r[100:])  # independent pairs of samples
    same = torch.stack([cos[:, c, :, c] for c in range(len(class_set))]).mean()
    other = torch.stack([cos[:, c, :, k] for c in range(len(class_set)) for k in range(len(class_set))
                         if k != c]).mean()
    e = m.class_embedding(class_set)
    e_cross = ((e @ e.t()).sum() - len(e)) / (len(e) * (len(e) - 1))  # mean cos between class embeddings
    # two samples: noise of norm ≈ 1 each, so same-class cos ≈ 1/2 and cross-class ≈ cos(e_c, e_k)/2
    assert same > other + 0.25 * (1 - e_cross)
    assert abs(same - 0.5) < 0.1
    # the same latents under the first reading's unit prior scale carry no class
    wide = F.normalize(mu + torch.randn(200, *mu.shape), dim=-1)
    assert torch.einsum("scd,scd->sc", wide[:100], wide[100:]).mean() < 0.05


def test_prompt_position_outputs_depend_on_the_class(frozen_clip, class_set):
    """Causal text attention: at `end` the outputs at the prompt positions only see SOS and t_c, so one
    latent for every class gives identical tokens; at `front` they also see the class name."""
    latent = torch.randn(1, 1, frozen_clip.embed_dim).expand(1, len(class_set), -1)  # one latent, all classes
    for position, differ in (("end", False), ("front", True)):
        m = _method(frozen_clip, class_set, class_token_position=position)
        with torch.no_grad():
            _, g = m.encode(class_set, latent)  # [1, C, M, D]
        spread = (g[0] - g[0, :1]).abs().max().item()
        assert (spread > 1e-3) == differ, (position, spread)
    with torch.no_grad():  # and with the classes' own latents, even at `end` the tokens carry the class
        m = _method(frozen_clip, class_set, class_token_position="end")
        mu, _ = m.posterior(m.class_embedding(class_set))
        _, g = m.encode(class_set, mu[None])
    assert (g[0] - g[0, :1]).abs().max() > 1e-4


@pytest.mark.parametrize("transport", ["ct", "ot"])
def test_gradients_reach_only_the_methods_parameters(frozen_clip, class_set, transport):
    m = _method(frozen_clip, class_set, transport=transport, detach_ct_weights=False)
    _perturb(m)
    loss, _ = m.backward(_batch(class_set), class_set)
    assert torch.isfinite(loss)
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in frozen_clip.loaded.model.parameters())
    assert not class_set.hand_features.requires_grad
    assert set(m.learned_state()) == {n for n, _ in m.named_parameters()}


@pytest.mark.parametrize("update", [{"transport": "ct"}, {"transport": "ot", "ot_iters": 20}, {"transport": "none"},
                                    {"stochastic": False}])
def test_a_few_training_steps_lower_the_loss(frozen_clip, class_set, separable_data, update):
    data = separable_data(class_set, n_per_class=8)
    m = _method(frozen_clip, class_set, **update)
    cfg = m.cfg.model_copy(update={"epochs": 4, "batch_size": 16, "warmup_epochs": 0, "lr": 0.01})
    history = train(m, data, class_set, cfg, seed=1)
    assert history[-1]["loss"] < history[0]["loss"]


def test_new_classes_score_and_sampled_inference_is_reproducible(frozen_clip, class_set):
    base, new = class_set.subset([0, 1, 2]), class_set.subset([3, 4, 5])
    m = _method(frozen_clip, base, inference="sample", eval_samples=3)
    _perturb(m)
    m.eval()
    batch = _batch(class_set, n=5)
    with torch.no_grad():
        cached = m.precompute(new)
        assert cached.shape == (3, 3, frozen_clip.embed_dim)
        torch.testing.assert_close(m.precompute(new), cached)  # private generator: same draws each time
        logits = m.logits(batch, new, cached)
        per_sample = (frozen_clip.logit_scale * torch.einsum("bd,scd->sbc", batch.features, cached)).softmax(-1)
        torch.testing.assert_close(logits.exp(), per_sample.mean(0), rtol=1e-5, atol=1e-6)
        mean_logits = m.logits(batch, new, m.text_features(new))
        # μ depends on e_c: moving a new class's embedding moves its feature
        moved = new.subset([0, 1, 2])
        moved.hand_features = F.normalize(moved.hand_features + 0.5 * torch.randn_like(moved.hand_features), dim=-1)
        assert not torch.allclose(m.text_features(moved), m.text_features(new), atol=1e-4)
    assert mean_logits.shape == (5, 3) and torch.isfinite(mean_logits).all()


def test_a_saved_state_rebuilds_from_class_names_only(frozen_clip, class_set, separable_data):
    from promptlab.evaluate import count_correct
    from promptlab.prompts.bank import ClassSet

    m = _method(frozen_clip, class_set)
    _perturb(m)
    names_only = ClassSet(class_set.names, class_set.template, class_set.hand_features[:0])
    rebuilt = _method(frozen_clip, names_only, seed=5)
    rebuilt.load_state_dict(m.learned_state())
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.text_features(class_set), m.text_features(class_set))
    data = separable_data(class_set)
    result = count_correct(rebuilt, data.features[:, 0], data.labels, class_set)
    assert result["total"] == len(data.labels)
