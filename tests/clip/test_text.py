import torch

from promptlab.clip.text import TextEncoder


def test_truncated_path_equals_open_clip_encode_text(loaded_clip):
    text = TextEncoder(loaded_clip.model, loaded_clip.tokenizer)
    prompts = ["a photo of a red circle.", "x.", "a very long prompt about a small purple hexagon on paper."]
    ids = text.tokenize(prompts)
    with torch.no_grad():
        ours = text.encode_ids(ids)
        reference = loaded_clip.model.encode_text(ids)  # full context_length, open_clip's own path
    assert ours.shape == reference.shape == (3, 128)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


def test_truncation_really_shortens_the_sequence(loaded_clip):
    text = TextEncoder(loaded_clip.model, loaded_clip.tokenizer)
    seen = []
    hook = loaded_clip.model.transformer.register_forward_hook(lambda m, i, o: seen.append(o.shape[1]))
    try:
        with torch.no_grad():
            text.encode_ids(text.tokenize(["a photo of a red circle."]))
    finally:
        hook.remove()
    assert seen == [9]  # SOS + "a photo of a red circle ." (7 tokens) + EOT, not the 32-token context


def test_encode_texts_is_normalised(loaded_clip):
    text = TextEncoder(loaded_clip.model, loaded_clip.tokenizer)
    feats = text.encode_texts(["a", "b c", "d e f"])
    torch.testing.assert_close(feats.norm(dim=-1), torch.ones(3))


def test_encode_tokens_pools_the_eot_row_of_its_token_outputs(frozen_clip):
    text = frozen_clip.text
    ids = text.tokenize(["a photo of a red circle.", "a cube."])
    eot = ids.argmax(dim=-1)
    with torch.no_grad():
        pooled, tokens = text.encode_tokens(text.embed(ids), eot)
        plain = text.encode_embeddings(text.embed(ids), eot)
    assert tokens.shape == (2, int(eot.max()) + 1, frozen_clip.embed_dim)
    torch.testing.assert_close(pooled, tokens[torch.arange(2), eot])
    torch.testing.assert_close(pooled, plain)


def test_shared_prefix_equals_the_full_prompts_with_gradients(frozen_clip):
    """encode_shared_prefix(prefix, suffix) = encode_embeddings(cat(prefix_g, suffix_c)) for every group g
    and class c, features and gradients, with class names of different token lengths."""
    text = frozen_clip.text
    assert text.can_share_prefix
    names = ["red circle", "x", "a very long purple hexagon name"]
    ids = text.tokenize([f"a photo of a {n}." for n in names])
    emb, eot = text.embed(ids), ids.argmax(dim=-1)
    torch.manual_seed(0)
    ctx = (emb[0, 1:5] + 0.1 * torch.randn(2, 4, text.width)).requires_grad_(True)  # G = 2 contexts
    prefix = torch.cat([emb[:1, :1].expand(2, -1, -1), ctx], dim=1)  # [2, 5, w]: SOS + context
    shared = text.encode_shared_prefix(prefix, emb[:, 5:], eot)  # [2, 3, D]
    (g_shared,) = torch.autograd.grad(shared.square().sum(), ctx)
    full = torch.stack([text.encode_embeddings(torch.cat([prefix[g:g + 1].expand(3, -1, -1), emb[:, 5:]], dim=1),
                                               eot) for g in range(2)])
    (g_full,) = torch.autograd.grad(full.square().sum(), ctx)
    assert shared.shape == (2, 3, frozen_clip.embed_dim)
    torch.testing.assert_close(shared, full, rtol=1e-5, atol=1e-5)
    # float32 rounding of two summation orders: relative to the gradient's size, not element by element
    assert float((g_shared - g_full).norm() / g_full.norm()) < 1e-5
    assert not torch.allclose(shared[0], shared[1])  # the two contexts give different features
