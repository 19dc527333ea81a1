import math

import pytest
import torch
import torch.nn.functional as F

from promptlab.errors import UserError
from promptlab.evaluate import count_correct
from promptlab.methods.base import Batch, TrainData
from promptlab.methods.linear_probe.method import LinearProbe, choose_c, objective, solve
from promptlab.prompts.bank import ClassSet
from promptlab.train import train



def _probe(frozen_clip, class_set, **kw):
    return LinearProbe(LinearProbe.Config(**kw), frozen_clip, class_set)


def _problem(n=30, d=5, c=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(c).repeat(n // c)
    centers = torch.randn(c, d, generator=gen, dtype=torch.float64)
    x = F.normalize(centers[y] + 0.8 * torch.randn(n, d, generator=gen, dtype=torch.float64), dim=-1)
    return x, y


def _grad(x, y, w, b, c):
    """Hand-written gradient of mean CE + ‖W‖²/(2cN): G = (softmax − onehot)/N, ∇W = Gᵀx + W/(cN), ∇b = ΣG."""
    n = len(y)
    g = (torch.softmax(x @ w.t() + b, dim=-1) - F.one_hot(y, w.shape[0]).double()) / n
    return g.t() @ x + w / (c * n), g.sum(0)


def test_solution_matches_gradient_descent_and_is_stationary():
    x, y = _problem()
    c = 1.0
    w, b, _ = solve(x, y, 3, c, max_iter=1000, tol=1e-10, history=10)  # stops on ΔJ < 64·eps first
    gw, gb = _grad(x, y, w, b, c)
    assert max(gw.abs().max(), gb.abs().max()) < 1e-7
    w_gd, b_gd = torch.zeros_like(w), torch.zeros_like(b)  # plain GD from the same start, to convergence
    for _ in range(6000):
        gw, gb = _grad(x, y, w_gd, b_gd, c)
        w_gd, b_gd = w_gd - 1.0 * gw, b_gd - 1.0 * gb
    assert max(gw.abs().max(), gb.abs().max()) < 1e-10
    torch.testing.assert_close(w, w_gd, rtol=0, atol=1e-6)
    torch.testing.assert_close(b, b_gd, rtol=0, atol=1e-6)
    # sklearn's objective c·ΣCE + ½‖W‖² is c·N times ours: its minimiser is the same point
    assert objective(x, y, w, b, c) <= objective(x, y, w + 1e-3, b, c)


def test_smaller_c_gives_smaller_weights():
    x, y = _problem()
    norms = [solve(x, y, 3, c, 1000, 1e-7, 10)[0].norm().item() for c in (1e2, 1.0, 1e-2, 1e-3)]
    assert all(a > b for a, b in zip(norms, norms[1:]))


def test_search_follows_the_official_bisection():
    # hand-traced: coarse peak 100; step 1 [10, 1000] -> 10 wins, bracket [10, 100]; step 2 10 beats 100 again
    score = lambda c: -abs(math.log10(c) - 1.2)
    chosen, tried = choose_c(score, [1e2, 1.0], steps=2, span=10.0, final="last_step")
    assert chosen == pytest.approx(10.0) and list(tried) == pytest.approx([100.0, 1.0, 10.0, 1000.0])
    chosen, _ = choose_c(lambda c: -abs(math.log10(c) - math.log10(37)), [1e6, 1e4, 1e2, 1, 1e-2], 8, 10.0,
                         "last_step")
    assert abs(math.log10(chosen) - math.log10(37)) < 2 / 2 ** 7  # within the last bracket
    chosen, _ = choose_c(lambda c: 0.0, [1e6, 1e4, 1.0], 3, 10.0, "last_step")  # ties: first, then left
    assert chosen == pytest.approx(1e5)
    noisy = {1e2: 5.0, 1.0: 9.0, 0.1: 1.0, 10.0: 2.0}
    chosen, _ = choose_c(lambda c: noisy.get(round(c, 6), 0.0), [1e2, 1.0], 1, 10.0, "best")
    assert chosen == 1.0


def _overfit_case(frozen_clip):
    """Two classes on axes u0, u1; one class-0 outlier sits at u1 + 0.3·s. Large c learns 's means class 0'
    and fails on class-1 val points that carry s; tiny c predicts the majority class 0; c ≈ 1 gets all."""
    d = frozen_clip.embed_dim
    e = torch.eye(d)
    u0, u1, s = e[0], e[1], e[2]
    feats = torch.stack([u0] * 6 + [u1] * 3 + [u1 + 0.3 * s])[:, None]  # [10, 1, D]
    data = TrainData(feats, torch.tensor([0] * 6 + [1] * 3 + [0]))
    val = TrainData(torch.stack([u1 + 0.2 * s] * 4 + [u0])[:, None], torch.tensor([1] * 4 + [0]))
    return data, val


def test_chosen_c_has_the_best_val_accuracy(frozen_clip, class_set):
    classes = class_set.subset([0, 1])
    data, val = _overfit_case(frozen_clip)
    probe = _probe(frozen_clip, classes)
    records = probe.fit(data, classes, val)
    grid = {r["C"]: r["acc"] for r in records[:7]}
    assert grid[1.0] == 100.0 and grid[1e6] < 50 and grid[1e-6] < 50
    assert records[-1]["acc"] == 100.0 and 0.1 <= records[-1]["C"] <= 10.0
    assert [r["epoch"] for r in records] == list(range(len(records)))
    out = probe.logits(Batch(F.normalize(val.features[:, 0], dim=-1), val.labels), classes)
    assert torch.equal(out.argmax(-1), val.labels)


def test_fit_through_train_learns_separable_data(frozen_clip, class_set, separable_data):
    probe = _probe(frozen_clip, class_set)
    data = separable_data(class_set, n_per_class=4, noise=0.01)
    val = separable_data(class_set, n_per_class=2, views=1, noise=0.01)
    history = train(probe, data, class_set, probe.cfg, seed=1, val=val)
    assert history[-1]["acc"] == 100.0 and all(r["lr"] == 0.0 for r in history)
    assert count_correct(probe, data.features[:, 1], data.labels, class_set)["acc"] == 100.0
    assert set(probe.learned_state()) == {"weight", "bias"} == {n for n, _ in probe.named_parameters()}
    assert all(p.grad is None for p in frozen_clip.loaded.model.parameters())
    x, y = probe.samples(data, "all")
    assert x.shape == (len(data.labels) * 2, frozen_clip.embed_dim) and torch.equal(y[:2], data.labels[[0, 0]])
    assert probe.samples(data, "first")[0].shape[0] == len(data.labels)


def test_reordered_subset_selects_trained_rows(frozen_clip, class_set):
    probe = _probe(frozen_clip, class_set)
    with torch.no_grad():
        probe.weight.copy_(torch.randn(probe.weight.shape, dtype=torch.float64))
        probe.bias.copy_(torch.arange(len(class_set), dtype=torch.float64))
    feats = F.normalize(torch.randn(5, frozen_clip.embed_dim), dim=-1)
    full = probe.logits(Batch(feats, torch.zeros(5, dtype=torch.long)), class_set)
    sub = class_set.subset([4, 1, 3])
    part = probe.logits(Batch(feats, torch.zeros(5, dtype=torch.long)), sub, probe.precompute(sub))
    torch.testing.assert_close(part, full[:, [4, 1, 3]])
    expected = feats.double() @ probe.weight[4].detach() + 4.0  # f(x)·w_4 + b_4, no logit scale
    torch.testing.assert_close(part[:, 0], expected.float())
    # a prompt rebuilt from its class names alone loads the same tensors and scores the same
    bare = ClassSet(class_set.names, class_set.template, class_set.hand_features[:0])
    again = _probe(frozen_clip, bare)
    again.load_state_dict(probe.learned_state())
    torch.testing.assert_close(again.logits(Batch(feats, torch.zeros(5, dtype=torch.long)), sub), part)


def test_unknown_class_and_missing_val_are_user_errors(frozen_clip, class_set, separable_data):
    probe = _probe(frozen_clip, class_set)
    other = ClassSet(["blue square", "pink moon"], class_set.template, class_set.hand_features[:2])
    with pytest.raises(UserError, match="pink moon"):
        probe.precompute(other)
    data = separable_data(class_set)
    empty = TrainData(data.features[:0, :1], data.labels[:0])
    for val in (None, empty):
        with pytest.raises(UserError, match="linear_probe.*val"):
            probe.fit(data, class_set, val)


def test_two_fits_are_byte_identical(frozen_clip, class_set, separable_data):
    data = separable_data(class_set, noise=0.3)
    val = separable_data(class_set, n_per_class=2, views=1, noise=0.3)
    runs = []
    for _ in range(2):
        probe = _probe(frozen_clip, class_set, search_steps=2, views="all")
        runs.append((probe.fit(data, class_set, val), probe.learned_state()))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in ("weight", "bias"))
