"""The pixel path: the recorded draw read from the shards, seeded CoOp augmentation per (seed, key, epoch)
(reproducible, worker-independent, checked against a by-hand transform), test pixels with the model's own
preprocessing, and an exactly resumable pixel-method training (PromptSRC with its GPA buffers)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from promptlab.artifacts import Artifacts
from promptlab.clip.features import train_transform, view_seed
from promptlab.data.pixels import PixelOptions, PixelSource, pixel_test_split
from promptlab.data.registry import DATASETS
from promptlab.data.shards import decode_image, iter_split, read_manifest, write_shards
from promptlab.data.synthetic import write_world
from promptlab.errors import UserError
from promptlab.methods.promptsrc.config import PromptSRCConfig
from promptlab.methods.promptsrc.method import PromptSRC
from promptlab.prompts.bank import build_class_set
from promptlab.train import epoch_batches, train

KEEP = [3, 5, 7, 9]  # four classes keep the training test fast


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    root, out = tmp_path_factory.mktemp("raw"), tmp_path_factory.mktemp("shards")
    write_world(root, seed=0, image_size=32, train_per_class=3, val_per_class=1, test_per_class=1,
                shifted_domains=[])
    (out / "synthetic").mkdir()
    write_shards(DATASETS["synthetic"], root, out / "synthetic", shots=2, seeds=[1], maxcount=40, log=lambda _: None)
    return out


def _source(loaded_clip, shards, **kw):
    keys, labels = Artifacts(shards).training_keys("synthetic", 1, KEEP)
    return PixelSource(loaded_clip, shards / "synthetic", keys, labels.tolist(), 3, seed=1,
                       options=PixelOptions(crop_scale_min=0.5, **kw)), keys, labels


def test_training_keys_are_the_recorded_draw_relabelled(shards):
    keys, labels = Artifacts(shards).training_keys("synthetic", 1, KEEP)
    manifest = read_manifest(shards / "synthetic")
    by_key = dict(zip(manifest["key"], manifest["label"]))
    assert len(keys) == 8 and labels.tolist() == [KEEP.index(by_key[k]) for k in keys]
    one, _ = Artifacts(shards).training_keys("synthetic", 1, KEEP, shots=1)
    assert len(one) == 4 and set(one) < set(keys)  # nested K-shot subsample, as the feature path


def test_augmentation_is_seeded_per_key_and_epoch(loaded_clip, shards):
    source, keys, labels = _source(loaded_clip, shards)
    first = list(source.epoch(0))
    again = list(source.epoch(0))
    order = [idx for idx, _ in epoch_batches(8, 1, 3, 1, 0)]
    assert [len(b) for b in first] == [3, 3]  # the feature path's batches: last incomplete one dropped
    for b, a, idx in zip(first, again, order):
        assert torch.equal(b.images, a.images) and b.labels.tolist() == labels[idx].tolist()
    # by hand: sample idx[0] of batch 0, decoded and transformed under its own seed
    data = {k: d for k, d, _ in iter_split(shards / "synthetic", "train")}
    key = keys[int(order[0][0])]
    torch.manual_seed(view_seed(1, key, 0))
    expected = train_transform(loaded_clip, 0.5)(decode_image(data[key]))
    assert torch.equal(first[0].images[0], expected)
    later = list(source.epoch(1))
    assert not torch.equal(later[0].images, first[0].images)  # another epoch, other views


def test_workers_give_the_same_batches(loaded_clip, shards):
    plain = list(_source(loaded_clip, shards)[0].epoch(2))
    workers = list(_source(loaded_clip, shards, num_workers=2)[0].epoch(2))
    assert all(torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) for a, b in zip(plain, workers))


def test_test_pixels_use_the_models_preprocessing(loaded_clip, shards):
    batches = list(pixel_test_split(loaded_clip, shards / "synthetic", KEEP, PixelOptions(test_batch_size=16)))
    samples = [(d, lab) for _, d, lab in iter_split(shards / "synthetic", "test") if lab in KEEP]
    images = torch.cat([b.images for b in batches])
    assert images.shape == (len(samples), 3, 32, 32)
    assert torch.cat([b.labels for b in batches]).tolist() == [KEEP.index(lab) for _, lab in samples]
    assert torch.equal(images[0], loaded_clip.preprocess(decode_image(samples[0][0])))


def test_missing_draw_samples_fail_with_one_line(loaded_clip, shards):
    with pytest.raises(UserError, match="1 few-shot samples are not in the train shards"):
        PixelSource(loaded_clip, shards / "synthetic", ["train_nosuchkey"], [0], 4, seed=1)


def test_pixel_training_resumes_exactly_gpa_included(frozen_clip, loaded_clip, shards, tmp_path):
    names = [n for i, n in enumerate(Artifacts(shards).classnames("synthetic")) if i in KEEP]
    with torch.no_grad():
        classes = build_class_set(frozen_clip.text, names, "a photo of a {}.", ensembles=())
    cfg = PromptSRCConfig(epochs=3, depth_text=2, depth_vision=2, lr=0.01, warmup_epochs=0, gpa_mean=2, gpa_std=1)
    source = _source(loaded_clip, shards)[0]
    data = None

    def fresh(seed):
        torch.manual_seed(seed)
        return PromptSRC(cfg, frozen_clip, classes)

    full = fresh(0)
    full_history = train(full, data, classes, cfg, seed=1, source=source)

    class Stop(Exception):
        pass

    def stop_after_epoch_1(epoch, record):
        if epoch == 1:
            raise Stop

    ckpt = tmp_path / "ckpt.safetensors"
    with pytest.raises(Stop):
        train(fresh(0), data, classes, cfg, seed=1, checkpoint=ckpt, source=source, on_epoch=stop_after_epoch_1)
    resumed = fresh(5)  # other init: everything must come from the checkpoint
    history = train(resumed, data, classes, cfg, seed=1, checkpoint=ckpt, source=source)
    assert history == full_history and [h["epoch"] for h in history] == [0, 1, 2]  # epochs 0-1 from the checkpoint
    for (name, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    assert any(k.startswith("gpa_sum.") for k in full.state_dict())
