import math

import pytest
import torch

from promptlab.methods.base_config import TrainConfig
from promptlab.methods.coop.method import CoOp
from promptlab.train import TrainData, epoch_batches, lr_at, train


def test_lr_schedule_is_constant_warmup_then_cosine():
    cfg = TrainConfig(epochs=10, lr=0.002, warmup_epochs=1, warmup_lr=1e-5)
    assert lr_at(cfg, 0) == 1e-5
    # Dassl's schedule, stepped by hand: the cosine's own epoch counter starts after the warm-up epoch
    assert lr_at(cfg, 1) == 0.002  # the first epoch after warm-up gets the full lr
    assert math.isclose(lr_at(cfg, 2), 0.5 * 0.002 * (1 + math.cos(math.pi / 10)))
    assert math.isclose(lr_at(cfg, 6), 0.001)
    assert lr_at(cfg, 9) < lr_at(cfg, 8) and lr_at(cfg, 9) > 0
    no_warmup = TrainConfig(epochs=10, lr=0.002, warmup_epochs=0)
    assert lr_at(no_warmup, 0) == 0.002 and math.isclose(lr_at(no_warmup, 5), 0.001)


def test_epoch_batches_cover_each_image_once_and_drop_the_ragged_tail():
    batches = list(epoch_batches(n=70, n_views=4, batch_size=32, seed=1, epoch=0))
    assert [len(i) for i, _ in batches] == [32, 32]
    seen = torch.cat([i for i, _ in batches])
    assert len(set(seen.tolist())) == 64
    assert all(((v >= 0) & (v < 4)).all() for _, v in batches)
    again = list(epoch_batches(n=70, n_views=4, batch_size=32, seed=1, epoch=0))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batches, again))
    other = list(epoch_batches(n=70, n_views=4, batch_size=32, seed=1, epoch=1))
    assert not torch.equal(batches[0][0], other[0][0])
    assert [len(i) for i, _ in epoch_batches(n=10, n_views=1, batch_size=32, seed=1, epoch=0)] == [10]


def _data(class_set):
    gen = torch.Generator().manual_seed(0)
    feats = class_set.hand_features.repeat_interleave(6, 0)[:, None] + 0.1 * torch.randn(36, 2, 128, generator=gen)
    return TrainData(feats, torch.arange(6).repeat_interleave(6))


class NoisyCoOp(CoOp):
    """CoOp whose training batches get noise from the global torch RNG (like mixup or latent sampling):
    resuming is exact only if the checkpoint restores that RNG too."""

    def loss(self, batch, classes):
        batch.features = batch.features + 0.05 * torch.randn_like(batch.features)
        return super().loss(batch, classes)


def test_resume_after_interruption_equals_uninterrupted(frozen_clip, class_set, tmp_path):
    cfg = CoOp.Config(epochs=4, batch_size=8, lr=0.01)
    data = _data(class_set)
    torch.manual_seed(0)
    full = NoisyCoOp(cfg, frozen_clip, class_set)
    full_history = train(full, data, class_set, cfg, seed=3)

    ckpt = tmp_path / "ckpt.safetensors"
    torch.manual_seed(0)
    part = NoisyCoOp(cfg, frozen_clip, class_set)

    class Stop(Exception):
        pass

    def stop_after_epoch_1(epoch, record):
        if epoch == 1:
            raise Stop

    try:
        train(part, data, class_set, cfg, seed=3, checkpoint=ckpt, on_epoch=stop_after_epoch_1)
    except Stop:
        pass
    torch.manual_seed(123)  # a fresh process: whatever RNG state; the checkpoint must restore it
    resumed = NoisyCoOp(cfg, frozen_clip, class_set)
    logged = []
    history = train(resumed, data, class_set, cfg, seed=3, checkpoint=ckpt,
                    on_epoch=lambda epoch, record: logged.append(record))
    assert torch.equal(resumed.ctx, full.ctx)
    # the records (the run's DVCLive curve) are the uninterrupted run's, epochs 0-1 replayed from the checkpoint
    assert history == logged == full_history and [h["epoch"] for h in history] == [0, 1, 2, 3]


def test_non_finite_loss_names_method_epoch_and_step(frozen_clip, class_set):
    cfg = CoOp.Config(epochs=1, batch_size=8)
    data = _data(class_set)
    data.features[:] = float("nan")
    method = CoOp(cfg, frozen_clip, class_set)
    try:
        train(method, data, class_set, cfg, seed=1)
    except FloatingPointError as exc:
        assert "coop" in str(exc) and "epoch 0" in str(exc) and "step 0" in str(exc)
    else:
        raise AssertionError("NaN loss did not stop training")


def test_prepare_sees_the_training_data_and_own_solvers_get_val(frozen_clip, class_set):
    """train() hands every method the full training data before the first epoch; an own-solver method trains
    in fit() with the val shots instead of the SGD loop, and its records reach on_epoch."""
    seen = {}

    class Probe(CoOp):
        own_solver = True

        def prepare(self, data, classes):
            seen["prepare"] = (data.features.shape, len(classes))

        def fit(self, data, classes, val):
            seen["val"] = val.labels.tolist()
            return [{"epoch": 0, "lr": 0.0, "loss": 1.5, "acc": 50.0}]

    data, val = _data(class_set), TrainData(torch.zeros(6, 1, 128), torch.arange(6))
    logged = []
    history = train(Probe(CoOp.Config(), frozen_clip, class_set), data, class_set, CoOp.Config(), seed=1,
                    val=val, on_epoch=lambda e, r: logged.append(r["loss"]))
    assert seen == {"prepare": (torch.Size([36, 2, 128]), 6), "val": list(range(6))}
    assert history == [{"epoch": 0, "lr": 0.0, "loss": 1.5, "acc": 50.0}] and logged == [1.5]


def test_every_batch_reaches_the_method_on_its_device(frozen_clip, class_set, separable_data):
    """Training data is stored on the CPU; the loop and the scorer must move each batch (and the class set)
    to the method's device before the method sees it. The method below claims a fake second device ("meta"),
    records what it is given and stops (meta tensors hold no values to go on with)."""
    from promptlab.evaluate import count_correct
    from promptlab.train import FeatureSource

    seen = []

    class Seen(Exception):
        pass

    class Spy(CoOp):
        @property
        def device(self):
            return torch.device("meta")

        def backward(self, batch, classes):
            seen.append({"features": batch.features.device.type, "labels": batch.labels.device.type,
                         "classes": classes.hand_features.device.type})
            raise Seen

        def precompute(self, classes):
            seen.append({"classes": classes.hand_features.device.type})

        def logits(self, batch, classes, cached=None):
            seen.append({"features": batch.features.device.type, "labels": batch.labels.device.type})
            raise Seen

    method = Spy(CoOp.Config(epochs=1, warmup_epochs=0, batch_size=8), frozen_clip, class_set)
    data = separable_data(class_set, n_per_class=4)
    with pytest.raises(Seen):
        train(method, data, class_set, method.cfg, seed=1)
    with pytest.raises(Seen):
        count_correct(method, data.features[:, 0], data.labels, class_set)
    assert len(seen) == 3 and all(d == "meta" for record in seen for d in record.values())
    # and the boundary check names a tensor that was not moved
    with pytest.raises(RuntimeError, match=r"batch.features is on cpu, the method on meta"):
        method.check_device(next(iter(FeatureSource(data, 8, 1, False).epoch(0))))
