import pytest
import torch

from promptlab.errors import UserError
from promptlab.methods.coop import CoOp
from promptlab.prompts.bank import build_class_set


def _coop(frozen_clip, class_set, **kw):
    return CoOp(CoOp.Config(**kw), frozen_clip, class_set)


def test_untrained_coop_equals_zero_shot_a_photo_of_a(frozen_clip, class_set):
    coop = _coop(frozen_clip, class_set)
    with torch.no_grad():
        torch.testing.assert_close(coop.text_features(class_set), class_set.hand_features, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("position, template", [("front", "{} a photo of a."), ("middle", "a photo {} of a.")])
def test_class_token_positions_match_the_equivalent_plain_prompt(frozen_clip, class_set, position, template):
    coop = _coop(frozen_clip, class_set, class_token_position=position)
    with torch.no_grad():
        expected = build_class_set(frozen_clip.text, class_set.names, template, ensembles=()).hand_features
        torch.testing.assert_close(coop.text_features(class_set), expected, rtol=1e-5, atol=1e-5)


def test_only_the_context_gets_gradients(frozen_clip, class_set):
    coop = _coop(frozen_clip, class_set)
    assert [n for n, p in coop.named_parameters()] == ["ctx"]
    feats = torch.nn.functional.normalize(torch.randn(4, 128), dim=-1)
    logits = frozen_clip.logit_scale * feats @ coop.text_features(class_set).t()
    logits.sum().backward()
    assert coop.ctx.grad is not None and coop.ctx.grad.abs().sum() > 0
    assert all(p.grad is None for p in frozen_clip.loaded.model.parameters())
    assert set(coop.learned_state()) == {"ctx"}


def test_random_init_and_class_specific_shapes(frozen_clip, class_set):
    torch.manual_seed(0)
    coop = _coop(frozen_clip, class_set, n_ctx=16, ctx_init=None, class_specific=True)
    assert coop.ctx.shape == (len(class_set), 16, 128)
    assert 0.015 < coop.ctx.std().item() < 0.025
    assert coop.text_features(class_set).shape == (len(class_set), 128)
    with pytest.raises(UserError, match="class_specific"):
        coop.text_features(class_set.subset([0, 1]))


def test_n_ctx_must_match_text_init(frozen_clip, class_set):
    with pytest.raises(UserError, match="coop.n_ctx=8 disagrees"):
        _coop(frozen_clip, class_set, n_ctx=8)
