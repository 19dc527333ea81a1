import pytest
import torch
import torch.nn.functional as F

from promptlab.evaluate import count_correct
from promptlab.methods.base import Batch
from promptlab.methods.cocoop.method import CoCoOp
from promptlab.methods.coop.method import CoOp
from promptlab.train import TrainData, train



def _cocoop(frozen_clip, class_set, **kw):
    torch.manual_seed(0)
    return CoCoOp(CoCoOp.Config(**kw), frozen_clip, class_set)


def _batch(n=3, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return Batch(F.normalize(torch.randn(n, 128, generator=gen), dim=-1), torch.arange(n) % 6)


def _zero_meta_net(method):
    with torch.no_grad():
        method.meta_net.linear2.weight.zero_()
        method.meta_net.linear2.bias.zero_()


def test_defaults_are_the_papers():
    cfg = CoCoOp.Config()
    assert (cfg.n_ctx, cfg.ctx_init, cfg.epochs, cfg.lr, cfg.batch_size) == (4, "a photo of a", 10, 0.002, 1)
    assert cfg.chunk_size == 8192 and cfg.class_token_position == "end"


@pytest.mark.parametrize("position", ["end", "middle", "front"])
def test_zero_meta_net_gives_coop_logits(frozen_clip, class_set, position):
    cocoop = _cocoop(frozen_clip, class_set, class_token_position=position)
    coop = CoOp(CoOp.Config(class_token_position=position), frozen_clip, class_set)
    with torch.no_grad():  # a trained-looking context, the same in both
        cocoop.ctx.add_(0.05 * torch.randn_like(cocoop.ctx))
        coop.ctx.copy_(cocoop.ctx)
    _zero_meta_net(cocoop)
    batch = _batch()
    with torch.no_grad():
        torch.testing.assert_close(cocoop.logits(batch, class_set), coop.logits(batch, class_set),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shared", [True, False])  # each image's prefix once, or every prompt whole
@pytest.mark.parametrize("chunk_size", [1, 5, 7, 13])  # inside one image, straddling images, odd sizes
def test_chunking_does_not_change_logits(frozen_clip, class_set, chunk_size, shared, monkeypatch):
    method, batch = _cocoop(frozen_clip, class_set), _batch(n=3)
    with torch.no_grad():
        whole = method.logits(batch, class_set)  # the shared-prefix path, one call
        assert method.shares_prefix()
        monkeypatch.setattr(CoCoOp, "shares_prefix", lambda self: shared)
        method.cfg = method.cfg.model_copy(update={"chunk_size": chunk_size})
        torch.testing.assert_close(method.logits(batch, class_set), whole, rtol=1e-5, atol=1e-5)


def test_class_features_depend_on_the_image(frozen_clip, class_set):
    method, batch = _cocoop(frozen_clip, class_set), _batch(n=4)
    assert method.precompute(class_set) is None
    with torch.no_grad():
        logits = method.logits(batch, class_set, None)
        pi = method.meta_net(batch.features)  # [B, w]
        # per image, CoOp's prompts with context ctx + π(x_b), encoded whole (no chunking): [B, C, D]
        feats = torch.stack([frozen_clip.text.encode_embeddings(
            *method.prompt_embeddings(class_set, method.context_for(class_set) + pi[b])) for b in range(len(pi))])
    assert logits.shape == (4, len(class_set)) and torch.isfinite(logits).all()
    assert pi.abs().sum() > 0 and feats.shape == (4, len(class_set), 128)
    assert (feats[0] - feats[1]).abs().max() > 1e-4
    expected = frozen_clip.logit_scale * torch.einsum("bd,bcd->bc", batch.features, F.normalize(feats, dim=-1))
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(NotImplementedError, match="depend on the image"):
        method.text_features(class_set)


def test_gradients_reach_context_and_meta_net_only(frozen_clip, class_set):
    method = _cocoop(frozen_clip, class_set, chunk_size=4)
    names = {n for n, _ in method.named_parameters()}
    assert names == {"ctx", "meta_net.linear1.weight", "meta_net.linear1.bias",
                     "meta_net.linear2.weight", "meta_net.linear2.bias"}
    batch = _batch(n=3)
    loss, _ = method.backward(batch, class_set)
    assert torch.isfinite(loss)
    for n, p in method.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n
    assert all(p.grad is None for p in frozen_clip.loaded.model.parameters())
    assert set(method.learned_state()) == names


def test_trains_at_batch_4_on_a_separable_problem(frozen_clip, class_set):
    gen = torch.Generator().manual_seed(0)
    centers = class_set.hand_features.repeat_interleave(4, dim=0)  # [24, D]: 4 images per class
    feats = centers[:, None] + 0.05 * torch.randn(len(centers), 2, centers.shape[1], generator=gen)
    data = TrainData(feats, torch.arange(len(class_set)).repeat_interleave(4))
    method = _cocoop(frozen_clip, class_set)
    clip_before = {k: v.clone() for k, v in frozen_clip.loaded.model.state_dict().items()}
    cfg = method.cfg.model_copy(update={"epochs": 3, "batch_size": 4, "warmup_epochs": 0, "lr": 0.01})
    history = train(method, data, class_set, cfg, seed=1)
    losses = [h["loss"] for h in history]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    result = count_correct(method, data.features[:, 0], data.labels, class_set, batch_size=5)
    assert result["total"] == 24
    for k, v in frozen_clip.loaded.model.state_dict().items():
        assert torch.equal(v, clip_before[k]), f"CLIP tensor {k} changed"
