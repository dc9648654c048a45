"""``weightcast demo``: the time-to-accuracy comparison on the embedded digits task, in about a minute.

AdamW, schedule-free AdamW, an EMA of AdamW's weights, AdamW with the shipped nowcaster's guarded jumps, and the
nowcaster's jumps along the trajectory of a slow average of AdamW's weights (judged on that average), each at the
learning rate the full study tuned for it on digits-mlp (``DEMO_LRS``; no tuning runs here), on ``seeds`` seeds.
The full study is ``python benchmarks/time_to_accuracy.py``; the 10-seed comparison on digits is
``benchmarks/results/averaged/tta_digits-mlp.md``.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

DEMO_METHODS = ("adamw", "schedulefree-adamw", "ema-adamw", "jump-adamw:nowcast+guard",
                "jump-slow-ema-adamw:nowcast+lag10")  # ForecastEMA's default lag: no lag-tuning runs either
# tuned on seed 0 of digits-mlp over ADAMW_LRS by benchmarks/time_to_accuracy.py (benchmarks/results/tta_digits-mlp.*);
# at digits' record spacing (10 steps) the slow average's decay is the EMA's (0.99), so it takes the EMA's rate
DEMO_LRS = {"adamw": (1e-2,), "schedulefree-adamw": (1e-2,), "ema-adamw": (1e-2,), "slow-ema-adamw": (1e-2,)}
QUICK_STEPS, QUICK_GOAL = 300, 0.95   # the quick run's budget, and a goal AdamW reaches in it (the task's 0.98 it
                                      # does not, so the quick table compared nothing)


def run_demo(out: Path, seeds: int = 1, quick: bool = False) -> str:
    """Run the demo, write ``tta_digits-mlp.{csv,md,png}`` into ``out`` and return the markdown table.
    ``quick``: :data:`QUICK_STEPS` steps instead of the task's budget, judged at :data:`QUICK_GOAL`."""
    from . import STUDY_TASKS, markdown_table, plot, run_study, summarise, write_csv

    study = STUDY_TASKS["digits-mlp"]
    if quick:
        study = dataclasses.replace(study, goal=dataclasses.replace(study.goal, target=QUICK_GOAL))
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = run_study(study, DEMO_METHODS, seeds=seeds, lrs=DEMO_LRS, budget=QUICK_STEPS if quick else None)
    title = "digits-mlp (embedded scikit-learn digits)" + (f", quick: {QUICK_STEPS} steps" if quick else "")
    table = markdown_table(summarise(results, study.goal), study.goal, title)
    write_csv(results, out / "tta_digits-mlp.csv", "digits-mlp")
    (out / "tta_digits-mlp.md").write_text(table)
    plot(results, study.goal, out / "tta_digits-mlp.png", title)
    note = (f"{seeds} seed(s): steps to the goal vary by 30-60% (std/mean) over seeds on this task; 10 seeds of these "
            "methods: benchmarks/results/averaged/tta_digits-mlp.md (with the average's lag tuned: "
            "benchmarks/results/tuned-lag/tta_digits-mlp.md); every baseline, 3 seeds: "
            "benchmarks/results/long/tta_digits-mlp.md")
    return table + f"\n{note}\ndone in {time.perf_counter() - start:.0f} s; results in {out}\n"
