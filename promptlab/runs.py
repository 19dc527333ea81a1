"""Which runs a method makes: one Run per (protocol, dataset, seed, shots), in a fixed order, and which runs
share a training (docs/protocols.md).

    base2new       train on the base half of a dataset's classes, test on base and on new (each alone)
    domain_shift   train on the source with all its classes, test on the source and on each target (the same
                   classes in other domains), each with its own class list
    cross_dataset  the same training, tested on other datasets' own classes (a different label space)
    few_shot       all classes of a dataset, trained on K shots per class for each K of eval.few_shot.shots

domain_shift, cross_dataset and the data.shots point of few_shot train the same thing (all classes, the seed's
full draw): runs with equal `training_key` train once and are evaluated from that one training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Run:
    """One (protocol, dataset, seed, shots) run of a method. `dataset` is the one trained on; `targets` the
    datasets tested besides it (domain_shift, cross_dataset)."""

    protocol: str
    dataset: str
    seed: int
    shots: int
    targets: tuple[str, ...] = ()

    @property
    def where(self) -> Path:
        """Its folder under a method's outputs: protocol/dataset[/shotsK]/seedN."""
        shots = [f"shots{self.shots}"] if self.protocol == "few_shot" else []
        return Path(self.protocol, self.dataset, *shots, f"seed{self.seed}")

    @property
    def trains_on_base(self) -> bool:
        return self.protocol == "base2new"

    def training_key(self, cfg) -> str:
        """Runs with equal keys train identically (same classes, draw and config): train once, reuse."""
        classes = "base" if self.trains_on_base else "all"
        return json.dumps([self.dataset, classes, self.seed, self.shots, cfg.model_dump(mode="json")],
                          sort_keys=True)


def plan_runs(params, method: str) -> list[Run]:
    """Every run of `method` that params ask for, in a fixed order (base2new, domain_shift, cross_dataset,
    few_shot; datasets and shots as listed; seeds innermost)."""
    ev, data, runs = params.eval, params.data, []
    if "base2new" in ev.protocols:
        runs += [Run("base2new", d, s, data.shots) for d in data.datasets for s in data.seeds]
    for protocol in ("domain_shift", "cross_dataset"):
        if protocol in ev.protocols:
            spec = getattr(ev, protocol)
            runs += [Run(protocol, spec.source, s, data.shots, tuple(spec.targets)) for s in data.seeds]
    fs = ev.few_shot
    if "few_shot" in ev.protocols and (fs.methods is None or method in fs.methods):
        runs += [Run("few_shot", d, s, k) for d in fs.datasets for k in fs.shots for s in data.seeds]
    return runs


def run_config(run: Run, cfg, few_shot_epochs: dict[int, int] | None):
    """The method config of a run: few_shot runs take eval.few_shot.epochs[K] when given (methods that train in
    epochs only)."""
    if run.protocol == "few_shot" and few_shot_epochs and "epochs" in type(cfg).model_fields:
        return cfg.model_copy(update={"epochs": few_shot_epochs[run.shots]})
    return cfg
