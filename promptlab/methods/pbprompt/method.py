"""PBPrompt: Patch-Prompt Aligned Bayesian Prompt Tuning for Vision-Language Models (Liu et al., UAI 2024).

Label-specific stochastic prompts, generated hierarchically, regularised towards the image's patches:

    e_c            [D]       class embedding: frozen feature of the class's hand-crafted prompt (our reading;
                             `class_embedding` may pick a template ensemble instead)
    q(r_c)         = N(μ(e_c), diag σ²(e_c)),  prior p(r_c) = N(e_c, prior_std²·I)
                   μ(e) = e + W_μ h, log σ(e) = W_σ h, h = ReLU(W_1 e)      (MLP, W_μ = W_σ = 0 at init)
    r_c^(s)        = μ + σ ⊙ ε, ε ~ N(0, I)                                   (reparameterised, global RNG)
    t_c            [M, w]    = Q + W_o · LN(Block([W_r r_c ; Q])[1:]) / √w    (one pre-LN self-attention block
                             over the latent token and M learnable queries Q; W_o = 0 at init and Q = the
                             embedding of "a photo of a", so untrained prompts are exactly "a photo of a {c}.";
                             the 1/√w keeps the generator's SGD step at the size of CoOp's context step)
    prompt_c       = [SOS][t_c][CLASS_c][.][EOS] -> frozen text encoder (encode_tokens):
                     w_c [D] = normalised EOT feature, g_{c,l} [D] = outputs at positions 1..M (l = 1..M)
    logits         = τ · f(x) · w_cᵀ

Loss (our reading of the ELBO + regulariser, docs/methods/pbprompt.md):
    L = −(1/S) Σ_s log p(y | x, r^(s)) + β_kl · mean_c KL(q(r_c) ‖ p(r_c)) + η · T(u, g; p)
with T = conditional transport (`transport: ct`) or entropic OT (`ot`, log-domain Sinkhorn), both in
promptlab/methods/transport.py, between the image's projected patch tokens u_m [P, D] (weights 1/P) and all
C·M prompt-token outputs g_{c,l} (weights p_c/M, p = softmax(logits) of the same sample), cost 1 − cos;
T is averaged over the batch and the S samples. `transport: none` is the paper's "B-Prompt" ablation,
`stochastic: false` (r = μ, no KL) its "P-Prompt". β_kl = 1/16 is the exact per-image ELBO with 16 shots
(KL summed over classes / N images = mean_c KL / shots).

Inference: `mean` uses r_c = μ(e_c) (text_features); `sample` averages the softmax probabilities of
`eval_samples` predictions (Bayesian model average; logits returns log of that average), drawn from a private
generator seeded with eval_seed so evaluation is reproducible and leaves the global RNG alone. New classes work:
μ and σ are functions of e_c. A deterministic method (stochastic: false) always uses the mean.

Our reading (the paper's details were not available; every choice is a Config field): e_c = hand-template
feature; residual μ and zero-initialised W_μ, W_σ, W_o (untrained = zero-shot "a photo of a {c}."); β_kl = 1/16;
η = 1 (the unweighted "ELBO + CT"); τ_ct = 0.1; p_c detached in T; the sampled prediction averages probabilities.
Cost: each step encodes S·C prompts in one text-encoder call; T holds [S·B, P, C·M] tensors, and `ot`
back-propagates through its ot_iters unrolled Sinkhorn iterations (memory × ot_iters: prefer `ct` for many
classes).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from promptlab.errors import UserError
from promptlab.methods.pbprompt.config import PBPromptConfig
from promptlab.methods.base import Batch, FrozenCLIP, PromptMethod, PromptTokens
from promptlab.methods.pbprompt.transport import conditional_transport, entropic_ot
from promptlab.prompts.bank import ClassSet


class LatentPosterior(torch.nn.Module):
    """e [C, D] -> (μ, σ) [C, D]: the amortised q(r_c). Starts at μ = e, σ = init_sigma."""

    def __init__(self, dim: int, hidden: int, init_sigma: float):
        super().__init__()
        self.hidden = torch.nn.Linear(dim, hidden)
        self.mu = torch.nn.Linear(hidden, dim)
        self.log_sigma = torch.nn.Linear(hidden, dim)
        for head in (self.mu, self.log_sigma):
            torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(self.mu.bias)
        torch.nn.init.constant_(self.log_sigma.bias, math.log(init_sigma))

    def forward(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.hidden(e))
        return e + self.mu(h), self.log_sigma(h).exp()


class PromptGenerator(torch.nn.Module):
    """r [..., D] -> prompt tokens [..., M, w]: one self-attention block over [W_r r ; Q], residual on Q."""

    def __init__(self, latent_dim: int, queries: torch.Tensor, heads: int, ff_mult: int):
        super().__init__()
        width = queries.shape[-1]
        self.queries = torch.nn.Parameter(queries)  # [M, w]
        self.latent_in = torch.nn.Linear(latent_dim, width)
        self.block = torch.nn.TransformerEncoderLayer(width, heads, ff_mult * width, dropout=0.0,
                                                      batch_first=True, norm_first=True)
        self.norm = torch.nn.LayerNorm(width)
        self.out = torch.nn.Linear(width, width)
        self.out_scale = 1.0 / math.sqrt(width)  # see forward
        torch.nn.init.zeros_(self.out.weight)
        torch.nn.init.zeros_(self.out.bias)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        lead, (m, width) = r.shape[:-1], self.queries.shape
        r = r.reshape(-1, r.shape[-1])  # [n, D]
        x = torch.cat([self.latent_in(r).unsqueeze(1), self.queries.expand(len(r), m, width)], dim=1)
        y = self.norm(self.block(x)[:, 1:])  # [n, M, w]: the query positions, unit scale per dim
        # With W_o = 0 at init, an SGD step moves W_o·y by lr·‖y‖²·grad = lr·w·grad; the 1/√w scale brings
        # that back to lr·grad, the step CoOp's context takes (unscaled, the generator's effective lr is w×).
        return (self.queries + self.out_scale * self.out(y)).view(*lead, m, width)


def gaussian_kl(mu: torch.Tensor, sigma: torch.Tensor, prior_mean: torch.Tensor, prior_std: float) -> torch.Tensor:
    """KL(N(μ, diag σ²) ‖ N(m, s²I)) per row, summed over dims: [C, D] -> [C]."""
    var_ratio = (sigma / prior_std) ** 2
    return 0.5 * (var_ratio + ((mu - prior_mean) / prior_std) ** 2 - 1 - var_ratio.log()).sum(dim=-1)


class PBPrompt(PromptMethod):
    needs_patches = True

    def __init__(self, cfg: PBPromptConfig, clip: FrozenCLIP, train_classes: ClassSet):
        super().__init__(cfg, clip, train_classes)
        width, dim = clip.text.width, clip.embed_dim
        if width % cfg.gen_heads:
            raise UserError(f"pbprompt.gen_heads={cfg.gen_heads} must divide the text width {width}")
        self.prefix = cfg.ctx_init if cfg.ctx_init else " ".join(["X"] * cfg.n_ctx)
        self.posterior = LatentPosterior(dim, cfg.hidden_dim, cfg.init_sigma).to(clip.text.device)
        self.generator = PromptGenerator(dim, self._init_queries(cfg, clip), cfg.gen_heads,
                                         cfg.gen_ff_mult).to(clip.text.device)
        self._tokens: dict[tuple[str, ...], PromptTokens] = {}

    def _init_queries(self, cfg: PBPromptConfig, clip: FrozenCLIP) -> torch.Tensor:
        if not cfg.ctx_init:
            return torch.randn(cfg.n_ctx, clip.text.width) * cfg.init_std
        ids = clip.text.tokenize([cfg.ctx_init])
        n_tokens = int(ids.argmax(dim=-1)) - 1
        if n_tokens != cfg.n_ctx:
            raise UserError(f"pbprompt.n_ctx={cfg.n_ctx} disagrees with ctx_init {cfg.ctx_init!r} ({n_tokens} "
                            "tokens); set ctx_init to null for a random init")
        return clip.text.embed(ids)[0, 1:1 + n_tokens].detach().clone().float()

    # -- the generative path ---------------------------------------------------------------------------------
    def class_embedding(self, classes: ClassSet) -> torch.Tensor:
        e = classes.template_features(self.cfg.class_embedding, option=f"{self.name}.class_embedding")
        return e.to(self.clip.text.device).float().detach()  # [C, D]

    def tokens(self, classes: ClassSet) -> PromptTokens:
        key = tuple(classes.names)
        if key not in self._tokens:
            self._tokens[key] = PromptTokens(self.clip, classes.names, self.prefix)
        return self._tokens[key]

    def encode(self, classes: ClassSet, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents r [S, C, D] -> (class features [S, C, D] normalised, prompt-token outputs [S, C, M, D]).
        All S·C prompts go through the text encoder in one call."""
        tok, m = self.tokens(classes), self.cfg.n_ctx
        s, c = r.shape[:2]
        emb = tok.embeddings[:, :int(tok.eot.max()) + 1]  # [C, L', w]: padding past the last EOT is never read
        ctx = self.generator(r).to(emb.dtype)  # [S, C, M, w]
        x = torch.cat([emb[:, :1].expand(s, -1, -1, -1), ctx, emb[:, 1 + m:].expand(s, -1, -1, -1)], dim=2)
        pooled, out = self.clip.text.encode_tokens(x.flatten(0, 1), tok.eot.repeat(s))
        w = F.normalize(pooled.float(), dim=-1).view(s, c, -1)
        return w, out[:, 1:1 + m].float().view(s, c, m, -1)

    # -- training --------------------------------------------------------------------------------------------
    def loss(self, batch: Batch, classes: ClassSet) -> tuple[torch.Tensor, torch.Tensor]:
        """(−E_q log p(y|x,r) + β_kl·KL + η·T, predictive log-probabilities [B, C])."""
        cfg = self.cfg
        e = self.class_embedding(classes)
        mu, sigma = self.posterior(e)  # [C, D] each
        if cfg.stochastic:
            r = mu + sigma * torch.randn(cfg.train_samples, *mu.shape, device=mu.device)  # [S, C, D]
            kl = gaussian_kl(mu, sigma, e, cfg.prior_std).mean()
        else:
            r, kl = mu.unsqueeze(0), mu.new_zeros(())
        w, g = self.encode(classes, r)
        logits = self.clip.logit_scale * torch.einsum("bd,scd->sbc", batch.features.float(), w)  # [S, B, C]
        s = logits.shape[0]
        nll = F.cross_entropy(logits.flatten(0, 1), batch.labels.repeat(s))  # mean over samples and images
        loss = nll + cfg.beta_kl * kl
        if cfg.transport != "none" and cfg.eta > 0:
            loss = loss + cfg.eta * self.transport_term(batch, g, logits)
        log_probs = torch.logsumexp(logits.log_softmax(dim=-1), dim=0) - math.log(s)  # log mean_s p_s
        return loss, log_probs

    def transport_term(self, batch: Batch, g: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Patches [B, P, D] vs prompt-token outputs g [S, C, M, D], token weights p_c/M from logits
        [S, B, C] -> mean over samples and images of CT (or OT)."""
        if batch.patches is None:
            raise UserError("pbprompt: the transport term needs patch tokens (features.patches: true)")
        s, c, m, _ = g.shape
        u = F.normalize(batch.patches.float(), dim=-1)  # [B, P, D]
        cos = torch.einsum("bpd,snd->sbpn", u, F.normalize(g, dim=-1).flatten(1, 2)).flatten(0, 1)  # [S·B, P, C·M]
        log_w = logits.log_softmax(dim=-1) - math.log(m)  # [S, B, C]: log(p_c / M)
        log_w = log_w.unsqueeze(-1).expand(-1, -1, -1, m).flatten(2).flatten(0, 1)  # [S·B, C·M], class-major
        if self.cfg.detach_ct_weights:
            log_w = log_w.detach()
        if self.cfg.transport == "ct":
            return conditional_transport(cos, log_w, self.cfg.tau_ct).mean()
        return entropic_ot(cos, log_w, self.cfg.ot_eps, self.cfg.ot_iters).mean()

    # -- classification --------------------------------------------------------------------------------------
    def text_features(self, classes: ClassSet) -> torch.Tensor:
        """[C, D] class features at the posterior mean r_c = μ(e_c)."""
        mu, _ = self.posterior(self.class_embedding(classes))
        return self.encode(classes, mu.unsqueeze(0))[0][0]

    def precompute(self, classes: ClassSet) -> torch.Tensor:
        """[C, D] (inference mean, or a deterministic method) or [S, C, D] sampled class features."""
        if self.cfg.inference == "mean" or not self.cfg.stochastic:
            return self.text_features(classes)
        mu, sigma = self.posterior(self.class_embedding(classes))
        gen = torch.Generator(device=mu.device).manual_seed(self.cfg.eval_seed)
        return torch.stack([  # one sample at a time: C prompts per text-encoder call, like text_features
            self.encode(classes, (mu + sigma * torch.randn(mu.shape, generator=gen, device=mu.device))[None])[0][0]
            for _ in range(self.cfg.eval_samples)])

    def logits(self, batch: Batch, classes: ClassSet, cached: torch.Tensor | None = None) -> torch.Tensor:
        """[B, C]: τ·f·wᵀ at the mean latent, or log mean_s softmax(τ·f·w_sᵀ) over sampled class features."""
        weights = cached if cached is not None else self.precompute(classes)
        scores = self.clip.logit_scale * batch.features.float() @ weights.transpose(-1, -2)  # [B, C] | [S, B, C]
        if weights.dim() == 2:
            return scores
        return torch.logsumexp(scores.log_softmax(dim=-1), dim=0) - math.log(len(weights))
