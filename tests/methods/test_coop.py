import pytest
import torch

from promptlab.errors import UserError
from promptlab.methods.coop.method import CoOp
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
    # the official draw: nn.init.normal_ on the whole [C, M, w] tensor, every class its own context
    torch.manual_seed(0)
    expected = torch.nn.init.normal_(torch.empty(len(class_set), 16, 128), std=0.02)
    assert torch.equal(coop.ctx.detach(), expected)
    assert not torch.equal(coop.ctx[0], coop.ctx[1])


def test_class_specific_context_is_closed_vocabulary(frozen_clip, class_set):
    """A class-specific context scores only its own classes: new classes of the same count (base2new's
    "new" half) are refused, not scored with other classes' contexts, and the run reports them as null."""
    from promptlab.evaluate import evaluate_run
    from promptlab.runner import Training, scorer

    base, new = class_set.subset([0, 1, 2]), class_set.subset([3, 4, 5])
    coop = _coop(frozen_clip, base, class_specific=True)
    assert not coop.open_vocabulary and _coop(frozen_clip, base).open_vocabulary
    with pytest.raises(UserError, match="scores only its 3 training classes"):
        coop.text_features(new)  # same class count, other classes
    assert coop.text_features(base).shape == (3, 128)

    class Art:
        def class_set(self, dataset):
            return class_set

    scored = []
    import promptlab.runner as runner
    old = runner.score_batches, runner.test_batches
    runner.score_batches = lambda method, batches, classes: scored.append(classes.names) or {"acc": 1.0}
    runner.test_batches = lambda *a: None
    try:
        result = evaluate_run("base2new", "d", (), len(class_set), scorer(Training("r", coop, base), Art()))
    finally:
        runner.score_batches, runner.test_batches = old
    assert result["new"] is None and scored == [base.names]


def test_n_ctx_must_match_text_init(frozen_clip, class_set):
    with pytest.raises(UserError, match="coop.n_ctx=8 disagrees"):
        _coop(frozen_clip, class_set, n_ctx=8)
