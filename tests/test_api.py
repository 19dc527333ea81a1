import numpy as np
import torch
import torch.nn.functional as F

from promptlab.api import PromptClassifier
from promptlab.clip.pretrain import save_checkpoint
from promptlab.data import synthetic
from promptlab.methods.coop.method import CoOp
from promptlab.saved_prompt import save_prompt
from promptlab.train import train


def _reloaded(tmp_path, loaded_clip, method, class_set, n_classes: int):
    """Save `method` and the CLIP, reload both through PromptClassifier.from_run; returns the classifier and
    n_classes rendered photos (one per class), their class names and their preprocessed pixels [n, 3, H, W]."""
    save_prompt(tmp_path / "run", method, class_set, {"protocol": "base2new"})
    save_checkpoint(loaded_clip.model, tmp_path / "clip.safetensors")
    classes = synthetic.world_classes()[:n_classes]
    images = [synthetic.render(c, "photo", np.random.default_rng(i), 32) for i, c in enumerate(classes)]
    clf = PromptClassifier.from_run(tmp_path / "run", "promptlab-tiny", str(tmp_path / "clip.safetensors"))
    pixels = torch.stack([loaded_clip.preprocess(im) for im in images])
    return clf, images, [c.name for c in classes], pixels


def test_a_saved_coop_prompt_classifies_new_images_like_the_trained_method(
        tmp_path, loaded_clip, frozen_clip, class_set, separable_data):
    cfg = CoOp.Config(epochs=2, batch_size=8, lr=0.01, warmup_epochs=0)
    torch.manual_seed(0)
    coop = CoOp(cfg, frozen_clip, class_set)
    train(coop, separable_data(class_set), class_set, cfg, seed=1)
    clf, images, names, pixels = _reloaded(tmp_path, loaded_clip, coop, class_set, 5)
    probs = clf.predict_proba(images, names)

    # independent path: open_clip's encode_image + the trained method's class features
    with torch.no_grad():
        feats = F.normalize(loaded_clip.model.encode_image(pixels), dim=-1)
        from promptlab.prompts.bank import build_class_set

        weights = coop.text_features(build_class_set(frozen_clip.text, names, "a photo of a {}.", ensembles=()))
        expected = (frozen_clip.logit_scale * feats @ weights.t()).softmax(dim=-1)
    assert probs.shape == (5, 5)
    torch.testing.assert_close(probs, expected, rtol=1e-4, atol=1e-5)
    assert clf.predict(images, names) == [names[i] for i in expected.argmax(dim=-1).tolist()]


def test_predict_with_no_images_is_a_clear_error(tmp_path, frozen_clip, class_set):
    import pytest

    from promptlab.errors import UserError

    save_prompt(tmp_path / "run", CoOp(CoOp.Config(), frozen_clip, class_set), class_set, {"protocol": "base2new"})
    clf = PromptClassifier(tmp_path / "run", frozen_clip)
    for call in (clf.predict, clf.predict_proba, clf.logits):
        with pytest.raises(UserError, match=r"^PromptClassifier: no images given \(pass a non-empty list"):
            call([], ["red circle", "blue star"])


def test_a_saved_pixel_method_runs_its_prompted_towers(tmp_path, loaded_clip, frozen_clip, class_set):
    """MaPLe saved and reloaded through PromptClassifier = the in-memory method on the same pixels."""
    from promptlab.methods.base import Batch
    from promptlab.methods.maple.method import MaPLe
    from promptlab.prompts.bank import build_class_set

    torch.manual_seed(0)
    maple = MaPLe(MaPLe.Config(depth=3), frozen_clip, class_set)
    with torch.no_grad():
        for p in maple.parameters():
            p.add_(0.1 * torch.randn_like(p))  # a "trained" prompt: not its init
    clf, images, names, pixels = _reloaded(tmp_path, loaded_clip, maple, class_set, 4)
    logits = clf.logits(images, names)
    with torch.no_grad():
        target = build_class_set(frozen_clip.text, names, "a photo of a {}.", ensembles=())
        expected = maple.logits(Batch(None, torch.zeros(4, dtype=torch.long), images=pixels), target)
        plain = F.normalize(loaded_clip.model.encode_image(pixels), dim=-1) @ maple.text_features(target).t()
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    assert (logits - frozen_clip.logit_scale * plain).abs().max() > 1e-3  # the vision prompts were used
