"""The proxy-world goal lines (the phenomena real CLIP shows, which the default synthetic world must reproduce),
checked against the committed metrics tables: one line per goal with its numbers and whether it holds.

    uv run python benchmarks/goal_lines.py [--tables metrics/tables] [--timings benchmarks/results/pipeline.json]

Exit code 1 when a line does not hold. Reads base2new.csv and few_shot.csv (mean and sample std over seeds),
and the time lines from a benchmarks/pipeline.py result (fresh clone, this machine): the fresh `dvc repro`
and the slowest of its no-op repros."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import polars as pl

UNTRAINED = {"zeroshot", "cupl", "linear_probe"}  # no prompt training (the probe has no new-class HM)


def goal_lines(tables: Path) -> list[tuple[str, str, bool]]:
    b2n = {r["method"]: r for r in pl.read_csv(tables / "base2new.csv").filter(dataset="average").iter_rows(named=True)}
    few_table = pl.read_csv(tables / "few_shot.csv")
    few = {r["method"]: r for r in few_table.filter(dataset="synthetic").iter_rows(named=True)}
    shots = [c for c in few_table.columns if c.isdigit()]  # "1", "2", ... in table order
    zs, coop, lp = b2n["zeroshot"], b2n["coop"], few["linear_probe"]
    zs_all = few["zeroshot"][shots[-1]]
    curve = [few["coop"][k] for k in shots]
    best = max(("cocoop", "kgcoop", "prograd"), key=lambda m: b2n[m]["new"])
    stds = {m: r["hm_std"] for m, r in b2n.items() if m not in UNTRAINED}
    worst = max(stds, key=stds.get)
    return [
        ("LP@16 all-class >= ZS + 10", f"{lp[shots[-1]]:.2f} vs {zs_all:.2f}", lp[shots[-1]] >= zs_all + 10),
        ("CoOp base >= ZS base + 5", f"{coop['base']:.2f} vs {zs['base']:.2f} ({coop['base'] - zs['base']:+.2f})",
         coop["base"] >= zs["base"] + 5),
        ("CoOp new < ZS new", f"{coop['new']:.2f} vs {zs['new']:.2f}", coop["new"] < zs["new"]),
        ("one of CoCoOp/KgCoOp/ProGrad new >= CoOp new + 3",
         f"{best} {b2n[best]['new']:.2f} ({b2n[best]['new'] - coop['new']:+.2f})", b2n[best]["new"] >= coop["new"] + 3),
        ("CoOp few-shot curve rises and ends above ZS", " / ".join(f"{v:.2f}" for v in curve) + f" vs {zs_all:.2f}",
         all(a < b for a, b in zip(curve, curve[1:])) and curve[-1] > zs_all),
        ("LP crosses ZS between 1 and 16 shots", f"LP@1 {lp[shots[0]]:.2f}, LP@16 {lp[shots[-1]]:.2f}, ZS {zs_all:.2f}",
         lp[shots[0]] < zs_all < lp[shots[-1]]),
        ("HM seed std <= 1.5 (trained methods)", f"largest {worst} {stds[worst]:.2f}", stds[worst] <= 1.5),
        ("ZS new >= 50 %", f"{zs['new']:.2f}", zs["new"] >= 50),
    ]


def time_lines(timings: Path) -> list[tuple[str, str, bool]]:
    t = json.loads(timings.read_text())
    noop = t.get("repro_noop_all_s") or [t["repro_noop_s"]]  # older results: one no-op
    return [
        ("fresh dvc repro <= 600 s", f"{t['repro_fresh_s']:.1f} s ({timings.name}, {t['commit'][:7]})",
         t["repro_fresh_s"] <= 600),
        ("no-op dvc repro <= 3 s", " / ".join(f"{s:.2f}" for s in noop) + " s", max(noop) <= 3),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tables", default="metrics/tables")
    ap.add_argument("--timings", default="benchmarks/results/pipeline.json")
    args = ap.parse_args()
    lines = goal_lines(Path(args.tables)) + time_lines(Path(args.timings))
    for name, figures, ok in lines:
        print(f"{'met ' if ok else 'MISS'}  {name}: {figures}")
    sys.exit(0 if all(ok for *_, ok in lines) else 1)


if __name__ == "__main__":
    main()
