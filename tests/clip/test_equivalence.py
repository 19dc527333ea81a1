"""What the speed-ups of benchmarks/ rest on, shown on the tiny model (no timing here: benchmarks/ times them):

- training from cached features gives the logits the classic per-step trainer (decode, augment, image tower
  every step; benchmarks/reference.py) computes for the same preprocessed images;
- the truncated text encoder gives CoOp the features *and gradients* of the full-context encoder of the CoOp
  code (forward equality against open_clip's encode_text is in test_text.py)."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds

from promptlab.clip.extract import extract_split
from promptlab.clip.features import augmented_views, encode_images, train_transform
from promptlab.data.shards import decode_image
from promptlab.data.synthetic import render, world_classes
from promptlab.methods.base import FrozenCLIP, TrainData
from promptlab.methods.coop.method import CoOp
from promptlab.train import epoch_batches, make_batch

REFERENCE = Path(__file__).resolve().parents[2] / "benchmarks" / "reference.py"
VIEWS, SEED, CROP = 2, 5, 0.5


@pytest.fixture(scope="module")
def reference():
    spec = importlib.util.spec_from_file_location("benchmarks_reference", REFERENCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """4 classes x 3 shots of 32-px synthetic PNGs as train shards: (dir, [(key, bytes, label)], names)."""
    out = tmp_path_factory.mktemp("shards")
    classes = world_classes()[:4]
    samples = []
    with wds.ShardWriter(str(out / "train-%06d.tar"), maxcount=5, mtime=0, verbose=0) as sink:
        for cls in classes:
            for i in range(3):
                buf = io.BytesIO()
                render(cls, "photo", np.random.default_rng([cls.label, i]), 32).save(buf, format="PNG")
                key = f"train_{cls.label:02d}_{i}"
                sink.write({"__key__": key, "png": buf.getvalue(), "cls": cls.label})
                samples.append((key, buf.getvalue(), cls.label))
    return out, samples, [c.name for c in classes]


def _coop(clip: FrozenCLIP, names: list[str]) -> CoOp:
    from promptlab.prompts.bank import ClassSet

    classes = ClassSet(names, "a photo of a {}.", torch.zeros(len(names), 1))
    torch.manual_seed(0)
    return CoOp(CoOp.Config(), clip, classes), classes


def _classic_batch_images(loaded_clip, samples, idx, views) -> torch.Tensor:
    """The preprocessed images the cache was built from: the same seeded view of each sample."""
    augment = train_transform(loaded_clip, CROP)
    return torch.stack([augmented_views(decode_image(samples[i][1]), samples[i][0], VIEWS, augment, SEED)[v]
                        for i, v in zip(idx.tolist(), views.tolist())])


def test_cached_feature_logits_equal_classic_per_step_logits(loaded_clip, frozen_clip, shards, reference):
    out, samples, names = shards
    tensors, keys = extract_split(loaded_clip, out, "train", n_views=VIEWS, seed=SEED, batch_size=8,
                                  patches=False, crop_scale_min=CROP)
    assert keys == [k for k, _, _ in samples]
    method, classes = _coop(frozen_clip, names)
    with torch.no_grad():  # the learned context moves away from its init, as after some training
        method.ctx.add_(0.05 * torch.randn_like(method.ctx))
    classic = reference.ClassicCoOp(loaded_clip, method, classes, CoOp.Config(), CROP)
    cached = TrainData(tensors["global"], tensors["labels"])
    idx, views = next(epoch_batches(len(samples), VIEWS, 8, seed=1, epoch=0))
    images = _classic_batch_images(loaded_clip, samples, idx, views)

    expected = classic.logits(images)  # classic: image tower on this step's images
    with torch.no_grad():
        got = method.logits(make_batch(cached, idx, views, False), classes)  # cached fp16 features
        exact = TrainData(encode_images(loaded_clip.model, images, patches=False)[0][:, None],
                          tensors["labels"][idx])
        got_fp32 = method.logits(make_batch(exact, torch.arange(len(idx)), torch.zeros_like(idx), False), classes)
    assert got.shape == expected.shape == (8, len(names))
    torch.testing.assert_close(got_fp32, expected, rtol=1e-5, atol=1e-5)  # same maths, fp32 features
    # fp16 storage: each component's relative error <= 2^-11, so |d cos| <= ~1e-3 and |d logit| <= tau * 1e-3
    tol = frozen_clip.logit_scale * 1e-3
    torch.testing.assert_close(got, expected, rtol=0, atol=tol)
    # the check discriminates: another view of the same images gives logits further away than that
    other = make_batch(cached, idx, (views + 1) % VIEWS, False)
    with torch.no_grad():
        assert (method.logits(other, classes) - expected).abs().max() > 5 * tol


def test_classic_trainer_step_runs_and_learns_only_the_context(loaded_clip, frozen_clip, shards, reference):
    _, samples, names = shards
    method, classes = _coop(frozen_clip, names)
    before = method.ctx.detach().clone()
    weights = {k: v.clone() for k, v in loaded_clip.model.state_dict().items()}
    classic = reference.ClassicCoOp(loaded_clip, method, classes, CoOp.Config(batch_size=4), CROP)
    steps = classic.epoch(samples, epoch=1, max_steps=2)
    assert len(steps) == 2 and all(np.isfinite(s["loss"]) for s in steps)
    assert not torch.equal(method.ctx.detach(), before)
    assert all(torch.equal(v, loaded_clip.model.state_dict()[k]) for k, v in weights.items())


def test_truncated_coop_features_and_gradients_equal_full_context(loaded_clip, separable_data, class_set,
                                                                  reference):
    full_clip = FrozenCLIP(loaded_clip)
    full_clip.text = reference.FullContextTextEncoder(loaded_clip.model, loaded_clip.tokenizer)
    runs = []
    for clip in (FrozenCLIP(loaded_clip), full_clip):
        torch.manual_seed(0)
        method = CoOp(CoOp.Config(ctx_init=None), clip, class_set)  # random context: non-trivial gradients
        data = separable_data(class_set, n_per_class=2, views=1)
        batch = make_batch(data, torch.arange(len(data.labels)), torch.zeros(len(data.labels), dtype=torch.long),
                           False)
        loss, logits = method.backward(batch, class_set)
        runs.append((method.text_features(class_set).detach(), logits.detach(), method.ctx.grad.clone()))
    (feats, logits, grad), (full_feats, full_logits, full_grad) = runs
    seen = []
    hook = loaded_clip.model.transformer.register_forward_hook(lambda m, i, o: seen.append(o.shape[1]))
    try:
        with torch.no_grad():
            full_clip.text.encode_ids(full_clip.text.tokenize(["a red circle."]))
    finally:
        hook.remove()
    assert seen == [loaded_clip.model.context_length]  # the reference really runs the full context
    torch.testing.assert_close(feats, full_feats, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits, full_logits, rtol=1e-5, atol=1e-5)
    assert grad.abs().max() > 0
    torch.testing.assert_close(grad, full_grad, rtol=1e-4, atol=1e-6)
