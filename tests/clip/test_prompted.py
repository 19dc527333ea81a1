"""The prompted towers: open_clip exactly when no prompts are given; prompts land where the deep methods put
them (checked against a hand-written block-by-block pass); gradients reach only the prompts."""

import pytest
import torch

from promptlab.clip.prompted import PromptedCLIP


@pytest.fixture(scope="module")
def towers(loaded_clip):
    return PromptedCLIP(loaded_clip.model)


def _pixels(n=3, size=32, seed=0):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_no_prompts_equals_open_clip_exactly(towers, loaded_clip):
    m = loaded_clip.model
    ids = loaded_clip.tokenizer(["a photo of a red circle.", "x.", "a long prompt about a small purple hexagon."])
    with torch.no_grad():
        full = towers.encode_text(m.token_embedding(ids), ids.argmax(-1), truncate=False)
        cut = towers.encode_text(m.token_embedding(ids), ids.argmax(-1))
        img = towers.encode_image(_pixels())
        assert torch.equal(full, m.encode_text(ids))
        assert torch.equal(img, m.encode_image(_pixels()))
        torch.testing.assert_close(cut, full, rtol=0, atol=1e-5)  # truncation: same maths, other reduction order


def _by_hand_text(m, x, eot, deep, n):
    """Independent pass over open_clip's own Transformer call per block, replacement by index assignment."""
    x = x + m.positional_embedding
    for i, block in enumerate(m.transformer.resblocks):
        if 1 <= i <= len(deep):
            x = x.clone()
            x[:, 1:1 + n] = deep[i - 1]
        x = block(x, attn_mask=m.attn_mask)
    x = m.ln_final(x)
    return x[torch.arange(len(x)), eot] @ m.text_projection


def _by_hand_image(m, pixels, first, deep):
    v = m.visual
    x = v.conv1(pixels).flatten(2).transpose(1, 2)
    x = torch.cat([v.class_embedding.expand(len(x), 1, -1), x], 1) + v.positional_embedding
    x = v.ln_pre(torch.cat([x, first.expand(len(x), -1, -1)], 1))
    n = first.shape[0]
    for i, block in enumerate(v.transformer.resblocks):
        if 1 <= i <= len(deep):
            x = x.clone()
            x[:, -n:] = deep[i - 1]
        x = block(x)
    return v.ln_post(x)[:, 0] @ v.proj


def test_prompt_layout_against_hand_written_pass(towers, loaded_clip):
    m, gen = loaded_clip.model, torch.Generator().manual_seed(1)
    ids = loaded_clip.tokenizer(["a photo of a cube.", "a photo of a big red star."])
    x = m.token_embedding(ids)
    x[:, 1:3] = torch.randn(2, 128, generator=gen)  # learned first-layer context (n = 2)
    deep_t = [torch.randn(2, 128, generator=gen) for _ in range(2)]  # blocks 1, 2 (depth 3 of 4)
    first = torch.randn(3, 192, generator=gen)
    deep_v = [torch.randn(3, 192, generator=gen) for _ in range(3)]  # blocks 1..3 (depth 4)
    with torch.no_grad():
        ours_t = towers.encode_text(x, ids.argmax(-1), deep_t, n_ctx=2, truncate=False)
        ours_v = towers.encode_image(_pixels(2), first, deep_v)
        ref_t = _by_hand_text(m, x, ids.argmax(-1), deep_t, 2)
        ref_v = _by_hand_image(m, _pixels(2), first, deep_v)
        plain_t = m.encode_text(ids)
    torch.testing.assert_close(ours_t, ref_t, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours_v, ref_v, rtol=0, atol=1e-6)
    assert (ours_t - plain_t).abs().max() > 1e-3  # the prompts really changed the features


def test_gradients_reach_only_the_prompts_and_checkpointing_matches(loaded_clip):
    m = loaded_clip.model
    ids = loaded_clip.tokenizer(["a photo of a cube.", "a photo of a star."])
    results = []
    for ckpt in (False, True):
        towers = PromptedCLIP(m, checkpointing=ckpt)
        torch.manual_seed(0)
        first, deep = torch.randn(2, 192, requires_grad=True), [torch.randn(2, 192, requires_grad=True)]
        ctx = torch.randn(2, 128, requires_grad=True)
        x = torch.cat([m.token_embedding(ids)[:, :1], ctx.expand(2, -1, -1), m.token_embedding(ids)[:, 3:]], 1)
        loss = (towers.encode_image(_pixels(2), first, deep) @ towers.encode_text(x, ids.argmax(-1), n_ctx=2).t()
                ).sum()
        loss.backward()
        results.append([first.grad, deep[0].grad, ctx.grad])
    assert all(p.grad is None for p in m.parameters())
    for a, b in zip(*results):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_bad_prompt_shapes_are_refused(towers, loaded_clip):
    with pytest.raises(ValueError, match="at most 3"):
        towers.encode_image(_pixels(1), torch.zeros(2, 192), [torch.zeros(2, 192)] * 4)
    with pytest.raises(ValueError, match="first layer's 2 tokens"):
        towers.encode_image(_pixels(1), torch.zeros(2, 192), [torch.zeros(3, 192)])
