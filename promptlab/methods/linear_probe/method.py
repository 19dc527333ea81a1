"""Linear probe: CLIP's linear-probe baseline (Radford et al., ICML 2021) as run in CoOp's few-shot comparison
(Zhou et al., IJCV 2022; official code lpclip/linear_probe.py).

Multinomial logistic regression on the frozen image features, nothing from the text side:

    logits = f(x) Wᵀ + b                   f(x) [B, D] L2-normalised image features, W [C, D], b [C]
    J_c(W, b) = 1/N Σ_i CE(f(x_i) Wᵀ + b, y_i) + 1/(2·c·N) ‖W‖²        (the bias is not penalised)

J_c is sklearn's LogisticRegression(C=c) objective c·Σ_i CE_i + ½‖W‖² divided by c·N, which is exactly the
form sklearn's lbfgs solver minimises (l2_reg_strength = 1/(C·sw_sum)); same minimiser, and its gradient
tolerance `tol` means what sklearn's does. We minimise it in float64, full batch, from W = b = 0 (sklearn's
start), with torch's L-BFGS and strong-Wolfe line search: deterministic, no RNG.

Choosing c on the few-shot val split (official procedure, all of it Config):
1. coarse: fit every c in `c_grid` (official [1e6, 1e4, 1e2, 1, 1e-2, 1e-4, 1e-6]), score val accuracy;
   the peak c* is the first best in grid order (np.argmax; ties go to the larger c in the official order);
2. refine (`search_steps` = official 8): bracket [c*/span, c*·span] (span 10); each step fits both ends,
   keeps the better one (a tie keeps the left, smaller c) and halves the bracket in log10 towards it
   (the other end moves to the geometric mean). The official result is the winner of the last step
   (`final: last_step`); `final: best` (our option) takes the best val accuracy over every c tried;
3. the final model is the fit on the train shots with the chosen c (one more record, epoch = last + 1).
A c seen before is not solved again (the solve is deterministic): one record per distinct c,
{epoch, lr: 0, loss: J_c at the solution (sklearn's objective / (c·N)), acc: val accuracy, C: c, iters}.

Facts of the official code we do not copy, and our reading:
- official features are unnormalised `clip_model.visual(x)` of un-augmented images; here f(x) is L2-normalised
  (what every method scores), so the numeric c values differ from the official ones (the grid is wide);
- our training shots have V augmented views and no un-augmented one: `views: first` (default) uses view 0
  only (N samples, the official count); `views: all` makes every view a sample (N·V samples, augmentation as
  extra data; on the synthetic world it was 2 points worse on base classes over 3 seeds and 2-10x slower);
- torch's L-BFGS stands in for scipy's L-BFGS-B: history 10 (scipy's maxcor), max_iter 1000 and gtol 1e-4
  (sklearn's defaults), tolerance on the change of J 64·eps (sklearn's ftol, absolute here since J = O(1)),
  at most 15 evaluations per iteration (scipy's maxfun 15000 for maxiter 1000). sklearn <= 1.1 (CoOp's
  time) applied gtol to the unscaled N·J, i.e. tol = 1e-4/N here: set `tol` for that (on the synthetic world
  1e-7 moved seed-1 accuracies by < 1 point, at 3x the time). Large c stops early on separable shots;
- as c -> 0, W -> c·Σ_i (onehot(y_i) − 1/C) f(x_i): a class-mean (prototype) classifier, not chance.
It cannot score classes it was not trained on (open_vocabulary False): another ClassSet is scored by mapping
each class name to its trained row (e.g. ImageNet-A's 200 of ImageNet's 1000); an unknown name is an error.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from promptlab.errors import UserError
from promptlab.methods.linear_probe.config import LinearProbeConfig
from promptlab.methods.base import Batch, FrozenCLIP, PromptMethod, TrainData
from promptlab.prompts.bank import ClassSet

FTOL = 64 * torch.finfo(torch.float64).eps  # sklearn's ftol for L-BFGS-B


def objective(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor, c: float) -> torch.Tensor:
    """J_c = mean CE + ‖W‖²/(2cN): x [N, D], y [N], w [C, D], b [C] -> scalar."""
    return F.cross_entropy(x @ w.t() + b, y) + 0.5 / (c * len(y)) * (w * w).sum()


def solve(x: torch.Tensor, y: torch.Tensor, n_classes: int, c: float, max_iter: int, tol: float,
          history: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Minimise J_c from zeros with full-batch L-BFGS (strong Wolfe); returns (W [C, D], b [C], iterations)."""
    w = torch.zeros(n_classes, x.shape[1], dtype=x.dtype, device=x.device, requires_grad=True)
    b = torch.zeros(n_classes, dtype=x.dtype, device=x.device, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, max_eval=15 * max_iter, tolerance_grad=tol,
                            tolerance_change=FTOL, history_size=history, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=False)
        loss = objective(x, y, w, b, c)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach(), int(opt.state[w].get("n_iter", 0))


def choose_c(score: Callable[[float], float], grid: list[float], steps: int, span: float,
             final: str) -> tuple[float, dict[float, float]]:
    """CoOp's lpclip search for the c maximising score(c) (val accuracy); each distinct c is scored once.
    Returns (chosen c, {c: score} in the order tried)."""
    tried: dict[float, float] = {}

    def acc(c: float) -> float:
        if c not in tried:
            tried[c] = score(c)
        return tried[c]

    accs = [acc(c) for c in grid]
    chosen = grid[accs.index(max(accs))]  # first best in grid order, like np.argmax
    lo, hi = chosen / span, chosen * span
    for _ in range(steps):  # official "binary search" in log10(c): keep the better end, halve towards it
        mid = (lo * hi) ** 0.5
        if acc(lo) < acc(hi):
            chosen, lo = hi, mid
        else:  # ties keep the left (smaller c)
            chosen, hi = lo, mid
    if final == "best":
        chosen = max(tried, key=tried.__getitem__)  # insertion order: the first best wins ties
    return chosen, tried


class LinearProbe(PromptMethod):
    own_solver = True
    open_vocabulary = False

    def __init__(self, cfg: LinearProbeConfig, clip: FrozenCLIP, train_classes: ClassSet):
        super().__init__(cfg, clip, train_classes)
        self.train_names = list(train_classes.names)
        self.row_of = {n: i for i, n in enumerate(self.train_names)}
        n, d = len(train_classes), clip.embed_dim
        self.weight = torch.nn.Parameter(torch.zeros(n, d, dtype=torch.float64))  # W [C, D]
        self.bias = torch.nn.Parameter(torch.zeros(n, dtype=torch.float64))  # b [C]

    # -- solver --------------------------------------------------------------------------------------------
    def samples(self, data: TrainData, views: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(x [M, D] float64 L2-normalised, y [M]); M = N·V (all views) or N (view 0)."""
        feats = data.features if views == "all" else data.features[:, :1]  # [N, V', D]
        n, v = feats.shape[:2]
        x = F.normalize(feats.reshape(n * v, -1).to(self.weight.device, torch.float64), dim=-1)
        return x, data.labels.to(self.weight.device).repeat_interleave(v)

    def fit(self, data: TrainData, classes: ClassSet, val: TrainData | None) -> list[dict]:
        cfg = self.cfg
        if val is None or len(val.labels) == 0:
            raise UserError(f"{self.name}: needs the few-shot val split to choose its regularisation C")
        if list(classes.names) != self.train_names:
            raise UserError(f"{self.name}: fit classes differ from the classes it was built for")
        x, y = self.samples(data, cfg.views)
        xv, yv = self.samples(val, "first")
        records = []

        def val_accuracy(c: float) -> float:  # one solve per distinct c; logs its record
            w, b, iters = solve(x, y, len(classes), c, cfg.max_iter, cfg.tol, cfg.history_size)
            acc = 100.0 * float(((xv @ w.t() + b).argmax(-1) == yv).double().mean())
            records.append({"epoch": len(records), "lr": 0.0, "loss": float(objective(x, y, w, b, c)),
                            "acc": acc, "C": c, "iters": iters})
            return acc

        chosen, tried = choose_c(val_accuracy, cfg.c_grid, cfg.search_steps, cfg.search_span, cfg.final)
        w, b, iters = solve(x, y, len(classes), chosen, cfg.max_iter, cfg.tol, cfg.history_size)
        with torch.no_grad():
            self.weight.copy_(w), self.bias.copy_(b)
        records.append({"epoch": len(records), "lr": 0.0, "loss": float(objective(x, y, w, b, chosen)),
                        "acc": tried[chosen], "C": chosen, "iters": iters})
        return records

    # -- classification ------------------------------------------------------------------------------------
    def rows(self, classes: ClassSet) -> torch.Tensor:
        """[C'] index of each scored class's trained row, matched by name (any subset or order)."""
        unknown = [n for n in classes.names if n not in self.row_of]
        if unknown:
            raise UserError(f"{self.name} cannot score classes it was not trained on: {unknown[:5]}"
                            + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else ""))
        return torch.tensor([self.row_of[n] for n in classes.names], dtype=torch.long, device=self.weight.device)

    def precompute(self, classes: ClassSet) -> torch.Tensor:
        return self.rows(classes)

    def logits(self, batch: Batch, classes: ClassSet, cached: torch.Tensor | None = None) -> torch.Tensor:
        """[B, C'] = f(x) W[rows]ᵀ + b[rows] (no logit scale), computed in float64, returned float32."""
        rows = cached if cached is not None else self.rows(classes)
        feats = batch.features.to(self.weight.device, torch.float64)
        return (feats @ self.weight[rows].t() + self.bias[rows]).float()
