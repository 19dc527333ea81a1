"""The one text-encoder path every method uses: token embeddings -> frozen open_clip text transformer ->
end-of-text pooling -> projection.

Attention is causal and pooling reads the end-of-text (EOT) position, so tokens after the longest prompt's EOT
can never influence any pooled feature: we truncate the sequence to max(EOT)+1 before the transformer. The
features are identical to the full 77-token (or context_length) pass at a fraction of the cost.

The same two facts allow a second saving (`encode_shared_prefix`): when many prompts begin with the same
tokens, e.g. CoOp's [SOS][v_1 .. v_M] before every class name, the hidden states of those first positions
never see what follows, so they are the same in every prompt. They are computed once, and each prompt's own
tokens attend to them as keys and values. For CoOp's "a photo of a {class}." that is 5 of 9 positions: the
text tower runs on 197 instead of 432 token rows for 48 classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock


class TextEncoder:
    """Wraps the text tower of an open_clip CLIP. Not an nn.Module on purpose: CLIP is frozen and must never
    appear in a method's state dict or optimiser."""

    def __init__(self, clip_model: torch.nn.Module, tokenizer):
        if getattr(clip_model, "text_pool_type", "argmax") != "argmax":
            raise ValueError("only CLIP-style text towers pooled at the EOT token (argmax) are supported")
        self.m = clip_model
        self.tokenizer = tokenizer
        self.dtype = clip_model.transformer.get_cast_dtype()

    @property
    def width(self) -> int:
        return self.m.token_embedding.weight.shape[1]

    @property
    def device(self) -> torch.device:
        return self.m.token_embedding.weight.device

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(texts).to(self.device)  # [C, context_length] int64

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids [C, L] -> token embeddings [C, L, width] (fp32 table; cast later)."""
        return self.m.token_embedding(ids)

    def encode_embeddings(self, x: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
        """x [C, L, width] prompt embeddings, eot [C] EOT positions -> unnormalised features [C, embed_dim].

        Gradients flow to x (learned context) but not to CLIP's weights."""
        return self.encode_tokens(x, eot)[0]

    def encode_tokens(self, x: torch.Tensor, eot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Like encode_embeddings, also returning every position's output in the joint space:
        (pooled [C, embed_dim], tokens [C, L', embed_dim]) with L' = max(eot) + 1 (the truncated length);
        tokens are ln_final then the text projection, the same map the pooled EOT row goes through."""
        length = int(eot.max()) + 1  # truncation: see module docstring
        x = x[:, :length].to(self.dtype) + self.m.positional_embedding[:length].to(self.dtype)
        mask = self.m.attn_mask[:length, :length] if self.m.attn_mask is not None else None
        x = self.m.transformer(x, attn_mask=mask)
        x = self.m.ln_final(x)  # [C, L', width]
        proj = self.m.text_projection
        tokens = proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj  # [C, L', embed_dim]
        return tokens[torch.arange(x.shape[0], device=x.device), eot], tokens

    @property
    def can_share_prefix(self) -> bool:
        """encode_shared_prefix needs open_clip's plain blocks (self-attention, then MLP); other block types
        (e.g. CustomResidualAttentionBlock) go through encode_embeddings on the full prompts."""
        return all(type(b) is ResidualAttentionBlock and not hasattr(b, "ln_1_kv")
                   for b in self.m.transformer.resblocks)

    def encode_shared_prefix(self, prefix: torch.Tensor, suffix: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
        """Features of the G·C prompts cat(prefix[g], suffix[c]) with each prefix run once (module docstring).

        prefix [G, p, w]: the first p token embeddings, shared by every class (G = 1 for CoOp's one context;
        G = B for CoCoOp's per-image context); suffix [C, s, w]: each class's remaining embeddings (class
        tokens, ".", EOT, padding); eot [C]: EOT positions in the whole prompt (all >= p). Returns unnormalised
        features [G, C, embed_dim], equal to encode_embeddings of the concatenated prompts up to float rounding
        (tests/clip/test_text.py). Gradients flow to prefix and suffix, not to CLIP."""
        p, length = prefix.shape[1], int(eot.max()) + 1
        pos = self.m.positional_embedding.to(self.dtype)
        head = prefix.to(self.dtype) + pos[:p]  # [G, p, w]
        tail = (suffix[:, :length - p].to(self.dtype) + pos[p:length])  # [C, s, w], s = length - p
        tail = tail.unsqueeze(0).expand(len(head), -1, -1, -1)  # [G, C, s, w]
        *blocks, last = self.m.transformer.resblocks
        for block in blocks:
            head, tail = _shared_prefix_block(block, head, tail)
        # the last block feeds only the pooled EOT row: its queries, out-projection and MLP run on that row
        pooled = self.m.ln_final(_last_block_at_eot(last, head, tail, eot - p))  # [G, C, w]
        proj = self.m.text_projection
        return proj(pooled) if isinstance(proj, torch.nn.Linear) else pooled @ proj  # [G, C, embed_dim]

    def encode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        return self.encode_embeddings(self.embed(ids), ids.argmax(dim=-1))

    @torch.no_grad()
    def encode_texts(self, texts: list[str], batch_size: int = 512) -> torch.Tensor:
        """Plain strings -> L2-normalised features [C, embed_dim] (fp32)."""
        out = [self.encode_ids(self.tokenize(texts[i:i + batch_size])).float()
               for i in range(0, len(texts), batch_size)]
        return F.normalize(torch.cat(out), dim=-1)


def _heads(x: torch.Tensor, n: int) -> torch.Tensor:
    """[..., L, w] -> [..., n, L, w / n]"""
    return x.unflatten(-1, (n, -1)).transpose(-3, -2)


def _merge(attn: torch.nn.MultiheadAttention, o: torch.Tensor) -> torch.Tensor:
    """Per-head outputs [..., n, L, d] -> out_proj([..., L, w])."""
    return attn.out_proj(o.transpose(-3, -2).flatten(-2))


def _prefix_keys(block: ResidualAttentionBlock, head: torch.Tensor, tail: torch.Tensor):
    """ln_1 + the in-projection of both parts, split in heads: (q, k, v) of the prefix [G, n, p, d] each,
    of the tails [G, C, n, s, d] each, and the tails' keys and values behind the prefix's [G, C, n, p + s, d]."""
    attn = block.attn
    n, C = attn.num_heads, tail.shape[1]
    qh, kh, vh = (_heads(t, n) for t in F.linear(block.ln_1(head), attn.in_proj_weight, attn.in_proj_bias
                                                 ).chunk(3, dim=-1))
    qt, kt, vt = (_heads(t, n) for t in F.linear(block.ln_1(tail), attn.in_proj_weight, attn.in_proj_bias
                                                 ).chunk(3, dim=-1))
    keys = torch.cat([kh.unsqueeze(1).expand(-1, C, -1, -1, -1), kt], dim=-2)
    values = torch.cat([vh.unsqueeze(1).expand(-1, C, -1, -1, -1), vt], dim=-2)
    return (qh, kh, vh), qt, keys, values


def _shared_prefix_block(block: ResidualAttentionBlock, head: torch.Tensor, tail: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """One open_clip ResidualAttentionBlock (x + attn(ln_1 x), then x + mlp(ln_2 x)) over a shared prefix
    head [G, p, w] and the per-class tails tail [G, C, s, w]. The prefix attends causally to itself; tail
    position i attends to the whole prefix and to tail positions <= i (the causal mask of the full prompt)."""
    (qh, kh, vh), qt, keys, values = _prefix_keys(block, head, tail)
    p, s = head.shape[1], tail.shape[2]
    allowed = torch.ones(s, p + s, dtype=torch.bool, device=tail.device).tril(diagonal=p)  # [s, p + s]
    head = head + block.ls_1(_merge(block.attn, F.scaled_dot_product_attention(qh, kh, vh, is_causal=True)))
    tail = tail + block.ls_1(_merge(block.attn, F.scaled_dot_product_attention(qt, keys, values,
                                                                                 attn_mask=allowed)))
    return head + block.ls_2(block.mlp(block.ln_2(head))), tail + block.ls_2(block.mlp(block.ln_2(tail)))


def _last_block_at_eot(block: ResidualAttentionBlock, head: torch.Tensor, tail: torch.Tensor,
                       rows: torch.Tensor) -> torch.Tensor:
    """The block's output at one tail row per class (rows [C], the EOT's index in the tail): [G, C, w]. Every
    position still gives keys and values; only the EOT row is queried and goes through out_proj and the MLP."""
    _, qt, keys, values = _prefix_keys(block, head, tail)
    p, C = head.shape[1], tail.shape[1]
    at = torch.arange(C, device=tail.device)
    q = qt[:, at, :, rows].movedim(0, 1).unsqueeze(-2)  # [C, G, n, d] (index dims first) -> [G, C, n, 1, d]
    allowed = torch.arange(keys.shape[-2], device=tail.device) <= (p + rows)[:, None]  # [C, p + s]
    out = F.scaled_dot_product_attention(q, keys, values, attn_mask=allowed[:, None, None])  # [G, C, n, 1, d]
    x = tail[:, at, rows] + block.ls_1(_merge(block.attn, out).squeeze(-2))  # [G, C, w]
    return x + block.ls_2(block.mlp(block.ln_2(x)))
