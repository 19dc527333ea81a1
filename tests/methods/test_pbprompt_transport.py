"""Transport maths (promptlab/methods/transport.py) against independent, explicit computations."""

import math

import torch

from promptlab.methods.pbprompt.transport import conditional_transport, entropic_ot, sinkhorn_log


def _problem(b=2, p=5, n=6, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    cos = torch.rand(b, p, n, generator=gen, dtype=dtype) * 2 - 1  # [B, P, N] in [-1, 1]
    w = torch.rand(b, n, generator=gen, dtype=dtype) + 0.1
    return cos, (w / w.sum(dim=1, keepdim=True)).log()


def test_ct_equals_an_explicit_double_loop():
    cos, log_b = _problem()
    tau = 0.3
    got = conditional_transport(cos, log_b, tau)
    bsz, n_p, n_n = cos.shape
    for i in range(bsz):
        b = [math.exp(v) for v in log_b[i].tolist()]
        c = [[1 - cos[i, m, n].item() for n in range(n_n)] for m in range(n_p)]
        e = [[math.exp(cos[i, m, n].item() / tau) for n in range(n_n)] for m in range(n_p)]
        forward = 0.0
        for m in range(n_p):  # patch -> tokens, weight 1/P each
            z = sum(b[n] * e[m][n] for n in range(n_n))
            forward += (1 / n_p) * sum(b[n] * e[m][n] / z * c[m][n] for n in range(n_n))
        backward = 0.0
        for n in range(n_n):  # token -> patches, weight b_n each
            z = sum(e[m][n] for m in range(n_p))
            backward += b[n] * sum(e[m][n] / z * c[m][n] for m in range(n_p))
        assert abs(got[i].item() - (forward + backward)) < 1e-5


def test_ct_with_one_dominant_token_transports_everything_to_it():
    cos, _ = _problem(b=1)
    log_b = torch.full((1, 6), -80.0)
    log_b[0, 2] = 0.0  # all target mass on token 2
    got = conditional_transport(cos, log_b, tau=0.5)
    expected = (1 - cos[0, :, 2]).mean() + (torch.softmax(cos[0, :, 2] / 0.5, 0) * (1 - cos[0, :, 2])).sum()
    torch.testing.assert_close(got[0], expected, rtol=1e-5, atol=1e-5)


def test_sinkhorn_plan_has_the_marginals_and_is_nonnegative():
    cos, log_b = _problem(b=3, p=7, n=5)
    log_a = torch.full((3, 7), -math.log(7))
    plan = sinkhorn_log(1 - cos, log_a, log_b, eps=0.1, iters=300)
    assert plan.dtype == torch.float32 and (plan >= 0).all()
    torch.testing.assert_close(plan.sum(dim=2), log_a.exp(), rtol=0, atol=1e-5)
    torch.testing.assert_close(plan.sum(dim=1), log_b.exp(), rtol=0, atol=1e-5)


def test_sinkhorn_matches_plain_float64_sinkhorn():
    cos, log_b = _problem(b=2, p=4, n=6, seed=3)
    cost, eps = (1 - cos).double(), 0.2
    a, b = torch.full((2, 4), 0.25, dtype=torch.float64), log_b.double().exp()
    plan = sinkhorn_log(1 - cos, a.log().float(), log_b, eps=eps, iters=200)
    for i in range(2):  # textbook scaling iterations: u = a / (K v), v = b / (Kᵀ u)
        k = torch.exp(-cost[i] / eps)
        u, v = torch.ones(4, dtype=torch.float64), torch.ones(6, dtype=torch.float64)
        for _ in range(2000):
            u = a[i] / (k @ v)
            v = b[i] / (k.t() @ u)
        torch.testing.assert_close(plan[i].double(), u[:, None] * k * v[None], rtol=0, atol=1e-6)
    expected = (plan.double() * cost).sum(dim=(1, 2))
    torch.testing.assert_close(entropic_ot(cos, log_b, eps, 200).double(), expected, rtol=1e-5, atol=1e-6)


def test_sinkhorn_and_ct_are_differentiable_in_float64():
    cos, log_b = _problem(b=1, p=3, n=4, seed=5, dtype=torch.float64)
    cos.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda c: entropic_ot(c, log_b, 0.3, 30), (cos,))
    assert torch.autograd.gradcheck(lambda c: conditional_transport(c, log_b, 0.3), (cos,))
    log_b = log_b.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda lb: conditional_transport(cos.detach(), lb, 0.3), (log_b,))


def test_fp16_input_runs_sinkhorn_in_fp32():
    cos, log_b = _problem()
    plan = sinkhorn_log((1 - cos).half(), torch.full((2, 5), -math.log(5)).half(), log_b.half(), 0.1, 50)
    assert plan.dtype == torch.float32 and torch.isfinite(plan).all()
