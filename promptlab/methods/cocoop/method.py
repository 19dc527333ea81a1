"""CoCoOp: Conditional Prompt Learning for Vision-Language Models (Zhou et al., CVPR 2022).

CoOp's context v_1..v_M plus a meta-net h = Linear(d_img -> d_img/16) - ReLU - Linear(-> width) whose output
π(x) is added to every context token, so the prompt (and hence every class feature) depends on the image:
    ctx_b = v + π(f_b)                              [M, w] per image b
    w_{b,c} = normalise(g([SOS][ctx_b][CLASS_c][.][EOS]))
    logits[b, c] = τ · <f_b, w_{b,c}>
f_b is the cached, L2-normalised image feature (the meta-net's input, as in the official code). Only v and the
meta-net train; CLIP is frozen. Prompt assembly is CoOp's (class_token_position end/middle/front and
class_specific all work), applied per image.

Cost: an image needs its own C text features, i.e. B·C prompts per batch through the text transformer. The
official code uses batch 1; here real batches work: the B·C prompts are encoded in chunks of at most
`chunk_size` prompts (each truncated to the chunk's longest EOT, see clip/text.py) and each chunk is scored at
once. In evaluation (no_grad) this bounds memory by chunk_size whatever the batch and class count; in training
autograd keeps every chunk's activations until backward, so training memory grows with batch_size · C (batch 1
is the low-memory setting). "middle"/"front" positions assemble prompts with a Python loop over classes per
image (CoOp's code): correct, but slower than "end" for many classes. With the class name at the end
(the default) an image's [SOS][v + π(x)] starts all its C prompts and is encoded once for them
(clip/text.py, encode_shared_prefix); a text-encoder call then takes chunk_size // C images.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F

from promptlab.methods.cocoop.config import CoCoOpConfig
from promptlab.methods.base import Batch, FrozenCLIP
from promptlab.methods.coop.method import CoOp
from promptlab.prompts.bank import ClassSet


class CoCoOp(CoOp):

    def __init__(self, cfg: CoCoOpConfig, clip: FrozenCLIP, train_classes: ClassSet):
        super().__init__(cfg, clip, train_classes)  # self.ctx: [M, w] (or [C, M, w] if class_specific)
        d_img, width = clip.embed_dim, clip.text.width
        hidden = max(1, d_img // 16)
        # Layer names follow the official code, so learned states read the same.
        self.meta_net = torch.nn.Sequential(OrderedDict([
            ("linear1", torch.nn.Linear(d_img, hidden)),
            ("relu", torch.nn.ReLU(inplace=True)),
            ("linear2", torch.nn.Linear(hidden, width)),
        ])).to(self.ctx.device)

    # -- classification ------------------------------------------------------------------------------------
    def text_features(self, classes: ClassSet) -> torch.Tensor:
        raise NotImplementedError("cocoop's class features depend on the image: call logits(batch, classes)")

    def precompute(self, classes: ClassSet) -> None:
        return None  # nothing is shared across batches: the prompts are conditioned on each image

    def logits(self, batch: Batch, classes: ClassSet, cached: torch.Tensor | None = None) -> torch.Tensor:
        feats = batch.features.float()  # [B, D] L2-normalised
        pi = self.meta_net(feats)  # [B, w]: the instance-conditional token π(x)
        if self.shares_prefix():
            return self.clip.logit_scale * self._shared_prefix_scores(classes, feats, pi)
        # Score each chunk as soon as it is encoded: only B·C scalars accumulate, never [B, C, D] features
        # (with 1000 classes and an evaluation batch of 1024 those would be 2 GB).
        scores = [(F.normalize(w.float(), dim=-1) * feats[rows // len(classes)]).sum(dim=-1)  # [n]
                  for rows, w in self._encoded_chunks(classes, pi)]
        return self.clip.logit_scale * torch.cat(scores).view(len(feats), len(classes))  # [B, C]

    def _shared_prefix_scores(self, classes: ClassSet, feats: torch.Tensor, pi: torch.Tensor) -> torch.Tensor:
        """cos(f_b, w_{b,c}) [B, C] when the class name ends the prompt: image b's [SOS][v + π(x_b)] is
        encoded once for all its classes (clip/text.py, encode_shared_prefix), chunk_size // C images per
        text-encoder call (at least one)."""
        prefix, suffix = self.shared_prompt_parts(classes, self.ctx + pi[:, None])  # [B, 1 + M, w], [C, s, w]
        eot, per = self.tokens(classes).eot, max(1, self.cfg.chunk_size // len(classes))
        rows = [(F.normalize(self.clip.text.encode_shared_prefix(prefix[b:b + per], suffix, eot).float(), dim=-1)
                 * feats[b:b + per, None]).sum(dim=-1) for b in range(0, len(feats), per)]  # [n, C] each
        return torch.cat(rows)

    def _encoded_chunks(self, classes: ClassSet, pi: torch.Tensor):
        """Yield (rows [n], features [n, D]) over the B·C prompts with context ctx + pi[b], walked image-major
        (row r = b·C + c) in chunks of n <= chunk_size rows. A chunk may cover the tail of one image and the
        head of the next, or, when C > chunk_size, part of one image; each image's [C, L, w] prompts are
        assembled once (CoOp.prompt_embeddings, so every class_token_position works) and sliced."""
        n_img, n_cls, size = pi.shape[0], len(classes), self.cfg.chunk_size
        base = self.context_for(classes)  # [C, M, w]
        eot = self.tokens(classes).eot  # [C]; the same for every image
        length = int(eot.max()) + 1  # drop padding now: it keeps the per-image prompt tensors small
        built, prompts = -1, None
        for start in range(0, n_img * n_cls, size):
            stop = min(start + size, n_img * n_cls)
            pieces = []
            for b in range(start // n_cls, (stop - 1) // n_cls + 1):  # images touched by this chunk
                if b != built:  # [C, L', w]; ctx + pi[b] broadcasts pi over classes and context tokens
                    prompts, built = self.prompt_embeddings(classes, base + pi[b])[0][:, :length], b
                pieces.append(prompts[max(start - b * n_cls, 0):min(stop - b * n_cls, n_cls)])
            rows = torch.arange(start, stop, device=pi.device)
            yield rows, self.clip.text.encode_embeddings(torch.cat(pieces), eot[rows % n_cls])  # [n, D]
