"""PBPrompt: Patch-Prompt Aligned Bayesian Prompt Tuning for Vision-Language Models (Liu et al., UAI 2024).

Label-specific stochastic prompts, generated hierarchically, regularised towards the image's patches:

    e_c            [D]       class embedding: frozen unit-norm feature of the class's hand-crafted prompt (our
                             reading; `class_embedding` may pick a template ensemble instead)
    q(r_c)         = N(μ(e_c), diag σ²(e_c)),  prior p(r_c) = N(e_c, σ0²·I),  σ0 = prior_std or 1/√D
                   μ(e) = e + W_μ h, log σ(e) = log σ_init + W_σ h, h = ReLU(W_1 e)
    r_c^(s)        = μ + σ ⊙ ε, ε ~ N(0, I)                                   (reparameterised, global RNG)
    t_c            [M, w]    = Q + W_o · LN(Block([W_r r_c ; Q])[1:]) / √w    (one pre-LN self-attention block
                             over the latent token and M learnable queries Q = the embedding of "a photo of a";
                             the 1/√w keeps the generator's SGD step at the size of CoOp's context step)
    prompt_c       = [SOS][CLASS_c][t_c][.][EOS] (front, default) or [SOS][t_c][CLASS_c][.][EOS] (end)
                     -> frozen text encoder: w_c [D] = normalised EOT feature, g_{c,l} [D] = the outputs at the
                     M prompt-token positions
    logits         = τ · f(x) · w_cᵀ

Why these scales and positions (each measured inert otherwise, see the tests):
- σ0 = 1/√D: e_c has norm 1 in D dims; N(e_c, I) would add noise of norm √D (a sample then has cos ≈ 0.09
  with its mean and carries no class). With σ0 = 1/√D the noise has norm ≈ 1, two samples of one class are
  closer to each other than to another class's, and the KL (in units of σ0) stays informative.
- no layer on the path e_c -> prompt starts at zero (W_μ, W_σ, W_o ~ N(0, head_init_std²)): with a zero W_o
  every loss term gives exactly zero gradient to the posterior and the generator's block at init.
- CLIP's text attention is causal: at `end` the prompt-position outputs never see the class name and carry
  their class only through r_c; at `front` they see it, so the transport aligns patches with class tokens.
- the generator is trained on sampled latents, so inference averages `eval_samples` = 20 sampled predictions
  (the paper's S = 20); `inference: mean` feeds r_c = μ(e_c) instead.

Loss (our reading of the ELBO + regulariser, docs/methods/pbprompt.md):
    L = −(1/S) Σ_s log p(y | x, r^(s)) + β_kl · mean_c KL(q(r_c) ‖ p(r_c)) + η · T(u, g; p)
with T = conditional transport (`transport: ct`) or entropic OT (`ot`, log-domain Sinkhorn), both in
promptlab/methods/pbprompt/transport.py, between the image's projected patch tokens u_m [P, D] (weights 1/P)
and all C·M prompt-token outputs g_{c,l} (weights p_c/M, p = softmax(logits) of the same sample), cost
1 − cos; T is averaged over the batch and the S samples. `transport: none` is the paper's "B-Prompt" ablation,
`stochastic: false` (r = μ, no KL) its "P-Prompt". β_kl defaults to C/N = 1/shots, the exact per-image ELBO
weight (KL summed over classes / N images = mean_c KL · C/N), set in `prepare` from the training shots.

Inference: `sample` (default) averages the softmax probabilities of `eval_samples` predictions (Bayesian model
average; logits returns log of that average), drawn from a private generator seeded with eval_seed so
evaluation is reproducible and leaves the global RNG alone; `mean` uses r_c = μ(e_c). New classes work: μ and
σ are functions of e_c. A deterministic method (stochastic: false) always uses the mean.

Our reading (the paper's details were not available; every choice is a Config field): e_c = hand-template
feature; residual μ; η = 0.1 (measured: the unweighted "ELBO + CT", η = 1, lost 1.8 HM); τ_ct = 0.1; p_c
detached in T; the sampled prediction averages probabilities. Cost: each step encodes S·C prompts in one
text-encoder call; T holds [S·B, P, C·M] tensors, and `ot` back-propagates through its ot_iters unrolled
Sinkhorn iterations (memory × ot_iters: prefer `ct` for many classes); sampled inference encodes
eval_samples·C prompts once per class set.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from promptlab.errors import UserError
from promptlab.methods.pbprompt.config import PBPromptConfig
from promptlab.methods.base import Batch, FrozenCLIP, PromptMethod, PromptTokens, TrainData
from promptlab.methods.pbprompt.transport import conditional_transport, entropic_ot
from promptlab.prompts.bank import ClassSet


class LatentPosterior(torch.nn.Module):
    """e [C, D] -> (μ, σ) [C, D]: the amortised q(r_c). Starts near μ = e, σ = init_sigma (small random heads:
    a zero head would pass no gradient back to W_1)."""

    def __init__(self, dim: int, hidden: int, init_sigma: float, head_std: float):
        super().__init__()
        self.hidden = torch.nn.Linear(dim, hidden)
        self.mu = torch.nn.Linear(hidden, dim)
        self.log_sigma = torch.nn.Linear(hidden, dim)
        for head in (self.mu, self.log_sigma):
            torch.nn.init.normal_(head.weight, std=head_std)
        torch.nn.init.zeros_(self.mu.bias)
        torch.nn.init.constant_(self.log_sigma.bias, math.log(init_sigma))

    def forward(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.hidden(e))
        return e + self.mu(h), self.log_sigma(h).exp()


class PromptGenerator(torch.nn.Module):
    """r [..., D] -> prompt tokens [..., M, w]: one self-attention block over [W_r r ; Q], residual on Q."""

    def __init__(self, latent_dim: int, queries: torch.Tensor, heads: int, ff_mult: int, out_std: float):
        super().__init__()
        width = queries.shape[-1]
        self.queries = torch.nn.Parameter(queries)  # [M, w]
        self.latent_in = torch.nn.Linear(latent_dim, width)
        self.block = torch.nn.TransformerEncoderLayer(width, heads, ff_mult * width, dropout=0.0,
                                                      batch_first=True, norm_first=True)
        self.norm = torch.nn.LayerNorm(width)
        self.out = torch.nn.Linear(width, width)
        self.out_scale = 1.0 / math.sqrt(width)  # see forward
        torch.nn.init.normal_(self.out.weight, std=out_std)  # small, never zero: gradients reach the block
        torch.nn.init.zeros_(self.out.bias)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        lead, (m, width) = r.shape[:-1], self.queries.shape
        r = r.reshape(-1, r.shape[-1])  # [n, D]
        x = torch.cat([self.latent_in(r).unsqueeze(1), self.queries.expand(len(r), m, width)], dim=1)
        y = self.norm(self.block(x)[:, 1:])  # [n, M, w]: the query positions, unit scale per dim
        # An SGD step moves W_o·y by lr·‖y‖²·grad = lr·w·grad; the 1/√w scale brings that back to lr·grad,
        # the step CoOp's context takes (unscaled, the generator's effective lr is w×).
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
        self.prior_std = cfg.prior_std or 1.0 / math.sqrt(dim)  # σ0 on the unit-norm e_c's scale
        init_sigma = cfg.init_sigma or self.prior_std
        self.posterior = LatentPosterior(dim, cfg.hidden_dim, init_sigma, cfg.head_init_std).to(clip.text.device)
        self.generator = PromptGenerator(dim, self._init_queries(cfg, clip), cfg.gen_heads, cfg.gen_ff_mult,
                                         cfg.head_init_std).to(clip.text.device)
        self.kl_weight = cfg.beta_kl  # None until prepare() sees the shots (plain attribute, not saved)
        self._tokens: dict[tuple[str, ...], PromptTokens] = {}
        self._layout: dict[tuple[str, ...], tuple[torch.Tensor, torch.Tensor]] = {}

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

    def layout(self, classes: ClassSet) -> tuple[torch.Tensor, torch.Tensor]:
        """(order [C, L'], ctx_pos [C, M]): `order` gathers the assembled sequence [SOS][t][CLASS][.][EOT]
        into the configured position, ctx_pos are where the M prompt tokens then sit. `end` is the identity;
        `front` gives [SOS][CLASS][t][.][EOT] (same length, EOT unmoved)."""
        key = tuple(classes.names)
        if key not in self._layout:
            tok, m = self.tokens(classes), self.cfg.n_ctx
            length = int(tok.eot.max()) + 1
            order = torch.arange(length).repeat(len(classes), 1)  # [C, L']
            ctx_pos = torch.arange(1, 1 + m).repeat(len(classes), 1)  # [C, M]
            if self.cfg.class_token_position == "front":
                for c, n in enumerate(tok.name_lens):
                    order[c, 1:1 + n + m] = torch.cat([torch.arange(1 + m, 1 + m + n), torch.arange(1, 1 + m)])
                    ctx_pos[c] = torch.arange(1 + n, 1 + n + m)
            device = tok.embeddings.device
            self._layout[key] = order.to(device), ctx_pos.to(device)
        return self._layout[key]

    def encode(self, classes: ClassSet, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents r [S, C, D] -> (class features [S, C, D] normalised, prompt-token outputs [S, C, M, D]).
        All S·C prompts go through the text encoder in one call."""
        tok, m = self.tokens(classes), self.cfg.n_ctx
        order, ctx_pos = self.layout(classes)
        s, c = r.shape[:2]
        emb = tok.embeddings[:, :order.shape[1]]  # [C, L', w]: padding past the last EOT is never read
        ctx = self.generator(r).to(emb.dtype)  # [S, C, M, w]
        x = torch.cat([emb[:, :1].expand(s, -1, -1, -1), ctx, emb[:, 1 + m:].expand(s, -1, -1, -1)], dim=2)
        x = x.gather(2, order[None, :, :, None].expand(s, -1, -1, x.shape[-1]))  # class name moved (front)
        pooled, out = self.clip.text.encode_tokens(x.flatten(0, 1), tok.eot.repeat(s))
        w = F.normalize(pooled.float(), dim=-1).view(s, c, -1)
        out = out.float().view(s, c, out.shape[1], -1)  # [S, C, L', D]
        g = out.gather(2, ctx_pos[None, :, :, None].expand(s, -1, -1, out.shape[-1]))  # [S, C, M, D]
        return w, g

    # -- training --------------------------------------------------------------------------------------------
    def prepare(self, data: TrainData, classes: ClassSet) -> None:
        """β_kl = C/N (1/shots) unless set: the KL of all C latents is paid once per pass over N images."""
        if self.cfg.beta_kl is None:
            self.kl_weight = len(classes) / len(data.labels)

    def loss(self, batch: Batch, classes: ClassSet) -> tuple[torch.Tensor, torch.Tensor]:
        """(−E_q log p(y|x,r) + β_kl·KL + η·T, predictive log-probabilities [B, C])."""
        cfg = self.cfg
        e = self.class_embedding(classes)
        mu, sigma = self.posterior(e)  # [C, D] each
        if cfg.stochastic:
            r = mu + sigma * torch.randn(cfg.train_samples, *mu.shape, device=mu.device)  # [S, C, D]
        else:
            r = mu.unsqueeze(0)
        w, g = self.encode(classes, r)
        logits = self.clip.logit_scale * torch.einsum("bd,scd->sbc", batch.features.float(), w)  # [S, B, C]
        s = logits.shape[0]
        loss = F.cross_entropy(logits.flatten(0, 1), batch.labels.repeat(s))  # mean over samples and images
        if cfg.stochastic:
            loss = loss + self.kl_term(mu, sigma, e)
        if cfg.transport != "none" and cfg.eta > 0:
            loss = loss + cfg.eta * self.transport_term(batch, g, logits)
        log_probs = torch.logsumexp(logits.log_softmax(dim=-1), dim=0) - math.log(s)  # log mean_s p_s
        return loss, log_probs

    def kl_term(self, mu: torch.Tensor, sigma: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """β_kl · mean_c KL(q(r_c) ‖ N(e_c, σ0² I)) for μ, σ, e [C, D]."""
        if self.kl_weight is None:
            raise UserError("pbprompt with beta_kl: null takes 1/shots from prepare(data, classes); call it first")
        return self.kl_weight * gaussian_kl(mu, sigma, e, self.prior_std).mean()

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
