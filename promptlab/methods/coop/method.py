"""CoOp: Learning to Prompt for Vision-Language Models (Zhou et al., IJCV 2022).

prompt_c = [SOS][v_1 .. v_M][CLASS_c tokens][.][EOS], fed to the frozen text transformer; only v trains.
Facts of the official code kept here because they change numbers:
- the prompt string is context + " " + classname + "." (the period is its own token before EOS);
- with a text init (ctx_init), v starts as that text's token embeddings and M must equal its token count
  ("a photo of a" = 4); without it v ~ N(0, init_std²) and the placeholder prompt is "X X ... X {name}.";
- class_token_position: "end" (default), "middle" (first half of v, class, second half), "front" (class right
  after SOS); pooling always stays at the EOT token;
- class_specific=True learns one context per class: a closed-vocabulary classifier (CoOp's paper), so it
  scores only the exact classes it was trained on (new classes, other datasets: reported as null). A random
  init draws each class's context independently (the official `nn.init.normal_` on [C, M, w]); a text init
  starts every class from the same words (the official code then ignores class_specific; ours keeps it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from promptlab.errors import UserError
from promptlab.methods.coop.config import CoOpConfig
from promptlab.methods.base import FrozenCLIP, PromptMethod, PromptTokens
from promptlab.prompts.bank import ClassSet


class CoOp(PromptMethod):

    def __init__(self, cfg: CoOpConfig, clip: FrozenCLIP, train_classes: ClassSet):
        super().__init__(cfg, clip, train_classes)
        self.prefix = cfg.ctx_init if cfg.ctx_init else " ".join(["X"] * cfg.n_ctx)
        self.train_names = list(train_classes.names)
        self.ctx = torch.nn.Parameter(self._init_context(cfg, clip))  # [M, w] or [C, M, w]
        self._tokens: dict[tuple[str, ...], PromptTokens] = {}

    def _init_context(self, cfg: CoOpConfig, clip: FrozenCLIP) -> torch.Tensor:
        width = clip.text.width
        if cfg.ctx_init:
            ids = clip.text.tokenize([cfg.ctx_init])
            n_tokens = int(ids.argmax(dim=-1)) - 1
            if n_tokens != cfg.n_ctx:
                raise UserError(f"{self.name}.n_ctx={cfg.n_ctx} disagrees with {self.name}.ctx_init "
                                f"{cfg.ctx_init!r} ({n_tokens} tokens); set ctx_init to null for a random init")
            ctx = clip.text.embed(ids)[0, 1:1 + n_tokens].clone().float()
            return ctx.unsqueeze(0).repeat(len(self.train_names), 1, 1) if cfg.class_specific else ctx
        # global RNG (the run seeds it); normal_ on the full [C, M, w] draws every class independently
        shape = (len(self.train_names), cfg.n_ctx, width) if cfg.class_specific else (cfg.n_ctx, width)
        return torch.empty(shape).normal_(0, cfg.init_std)

    @property
    def open_vocabulary(self) -> bool:
        return not self.cfg.class_specific

    def tokens(self, classes: ClassSet) -> PromptTokens:
        key = tuple(classes.names)
        if key not in self._tokens:
            self._tokens[key] = PromptTokens(self.clip, classes.names, self.prefix)
        return self._tokens[key]

    def context_for(self, classes: ClassSet) -> torch.Tensor:
        """[C, M, w] context per class (shared context broadcast)."""
        if self.cfg.class_specific:
            if list(classes.names) != self.train_names:  # never score a class with another class's context
                raise UserError(f"{self.name} with class_specific=True scores only its {len(self.train_names)} "
                                "training classes, in their order")
            return self.ctx
        return self.ctx.unsqueeze(0).expand(len(classes), -1, -1)

    def prompt_embeddings(self, classes: ClassSet, ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Assemble [C, L, w] prompt embeddings from per-class context ctx [C, M, w]; returns (x, eot)."""
        tok = self.tokens(classes)
        emb, m = tok.embeddings, ctx.shape[1]
        prefix, suffix = emb[:, :1], emb[:, 1 + m:]  # SOS | class tokens, ".", EOT, padding
        pos = self.cfg.class_token_position
        if pos == "end":
            return torch.cat([prefix, ctx.to(emb.dtype), suffix], dim=1), tok.eot
        rows = []
        half = m // 2
        for i, n in enumerate(tok.name_lens):
            name, rest = suffix[i, :n], suffix[i, n:]
            c = ctx[i].to(emb.dtype)
            parts = [prefix[i], name, c, rest] if pos == "front" else [prefix[i], c[:half], name, c[half:], rest]
            rows.append(torch.cat(parts, dim=0))
        return torch.stack(rows), tok.eot

    def shares_prefix(self) -> bool:
        """[SOS][v_1 .. v_M] starts every class's prompt (one context, class name at the end): the text
        encoder then runs those M + 1 positions once for all classes (clip/text.py, encode_shared_prefix)."""
        return self.cfg.class_token_position == "end" and not self.cfg.class_specific and \
            self.clip.text.can_share_prefix

    def shared_prompt_parts(self, classes: ClassSet, ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(prefix [G, 1 + M, w] = [SOS][ctx_g], suffix [C, L - 1 - M, w]) for G contexts ctx [G, M, w]."""
        emb = self.tokens(classes).embeddings
        sos = emb[:1, :1].expand(len(ctx), -1, -1)
        return torch.cat([sos, ctx.to(emb.dtype)], dim=1), emb[:, 1 + ctx.shape[1]:]

    def text_features(self, classes: ClassSet) -> torch.Tensor:
        if self.shares_prefix():
            prefix, suffix = self.shared_prompt_parts(classes, self.ctx.unsqueeze(0))
            feats = self.clip.text.encode_shared_prefix(prefix, suffix, self.tokens(classes).eot)[0]  # [C, D]
        else:
            x, eot = self.prompt_embeddings(classes, self.context_for(classes))
            feats = self.clip.text.encode_embeddings(x, eot)
        return F.normalize(feats.float(), dim=-1)
