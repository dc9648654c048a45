"""Summaries, tables, CSV and plots of a time-to-accuracy study."""
from __future__ import annotations

import math
import statistics
from pathlib import Path

from .run import AFTER_STEPS, Goal, RunResult


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(results: dict[str, dict], goal: Goal, baseline: str = "adamw") -> list[dict]:
    """One row per method: mean ± std over the measured seeds of steps and seconds to the goal (over the seeds
    that reached it), final metric, jumps, the largest metric loss across a jump, and speedups over ``baseline``.
    A method that missed the goal on some seed has ``reached < seeds``; its speedup counts only its successes."""
    rows = []
    for method, entry in results.items():
        runs: list[RunResult] = entry["runs"]
        hit = [r for r in runs if r.steps_to_target is not None]
        steps = _mean_std([r.steps_to_target for r in hit])
        seconds = _mean_std([r.seconds_to_target for r in hit])
        final = _mean_std([r.final for r in runs if not math.isnan(r.final)])
        drops = [(b - a) if goal.metric == "acc" else (a - b) for r in runs for _, b, a, _ in r.jumps]
        later = [(b - a) if goal.metric == "acc" else (a - b) for r in runs for _, b, _, a in r.jumps
                 if not math.isnan(a)]
        rows.append({"method": method, "lr": entry["lr"], "seeds": len(runs), "reached": len(hit),
                     "steps_mean": steps[0], "steps_std": steps[1], "seconds_mean": seconds[0],
                     "seconds_std": seconds[1], "final_mean": final[0], "final_std": final[1],
                     "jumps_mean": statistics.fmean([len(r.jumps) for r in runs]) if runs else 0,
                     "skipped_jumps": sum(r.skipped_jumps for r in runs),
                     "worst_jump_drop": max(drops) if drops else math.nan,
                     "mean_jump_drop": statistics.fmean(drops) if drops else math.nan,
                     "worst_drop_later": max(later) if later else math.nan,
                     "jumps_worse_later": sum(d > 0 for d in later), "jumps_judged_later": len(later)})
    base = next((r for r in rows if r["method"] == baseline), None)
    for row in rows:
        for key in ("steps", "seconds"):
            ok = base is not None and base["reached"] and row["reached"]
            row[f"speedup_{key}"] = base[f"{key}_mean"] / row[f"{key}_mean"] if ok else math.nan
    return rows


def markdown_table(rows: list[dict], goal: Goal, title: str) -> str:
    """The summary as a markdown table."""
    sign = ">=" if goal.metric == "acc" else "<="
    lines = [f"### {title}: steps and train seconds to val {goal.metric} {sign} {goal.target}", "",
             "| method | lr | reached | steps to goal | seconds to goal | speedup (steps) | speedup (time) | "
             f"final {goal.metric} | jumps | worst / mean {goal.metric} lost right after a jump | "
             f"worst lost {AFTER_STEPS} steps after; jumps worse then |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda m, s, p: "—" if math.isnan(m) else f"{m:.{p}f} ± {s:.{p}f}"  # noqa: E731
    for r in rows:
        drop = "—" if math.isnan(r["worst_jump_drop"]) else f"{r['worst_jump_drop']:.4f} / {r['mean_jump_drop']:.4f}"
        later = ("—" if math.isnan(r["worst_drop_later"]) else
                 f"{r['worst_drop_later']:.4f}; {r['jumps_worse_later']}/{r['jumps_judged_later']}")
        speed = lambda v: "—" if math.isnan(v) else f"{v:.2f}×"  # noqa: E731
        lines.append(f"| {r['method']} | {r['lr']:g} | {r['reached']}/{r['seeds']} | "
                     f"{fmt(r['steps_mean'], r['steps_std'], 0)} | {fmt(r['seconds_mean'], r['seconds_std'], 2)} | "
                     f"{speed(r['speedup_steps'])} | {speed(r['speedup_seconds'])} | "
                     f"{fmt(r['final_mean'], r['final_std'], 4)} | {r['jumps_mean']:.1f} | {drop} | {later} |")
    return "\n".join(lines) + "\n"


def write_csv(results: dict[str, dict], path: Path, task: str) -> None:
    """Every run (tuning runs included, config phase "tune") in the one results schema
    (:func:`weightcast.results.write_results`): per run steps and seconds to the goal, final metric, train seconds
    and jumps; the validation curve (metric "val_metric", x = step, train seconds in config); per jump the metric
    just before, just after and AFTER_STEPS steps after (x = the jump's step)."""
    from ..results import write_results

    rows = []
    for method, entry in results.items():
        for phase in ("tuning", "runs"):
            for r in entry[phase]:
                config = {"task": task, "lr": r.lr, "phase": "tune" if phase == "tuning" else "measure",
                          "budget": r.budget, "diverged": r.diverged}
                base = {"benchmark": "time_to_accuracy", "name": method, "seed": r.seed, "config": config}
                for metric, unit, value in (("steps_to_target", "steps", r.steps_to_target),
                                            ("seconds_to_target", "s", r.seconds_to_target),
                                            ("final", "metric", r.final), ("train_seconds", "s", r.train_seconds),
                                            ("jumps", "count", len(r.jumps))):
                    rows.append({**base, "metric": metric, "unit": unit,
                                 "value": "" if value is None else value})
                for step, seconds, value in r.curve:
                    rows.append({**base, "metric": "val_metric", "unit": "metric", "x_name": "step",
                                 "x_value": step, "value": value, "config": {**config, "train_seconds": seconds}})
                for (step, before, after, later), k in zip(r.jumps, r.horizons or [None] * len(r.jumps)):
                    for metric, value in (("jump_before", before), ("jump_after", after),
                                          (f"jump_after_{AFTER_STEPS}", later)):
                        rows.append({**base, "metric": metric, "unit": "metric", "x_name": "step", "x_value": step,
                                     "value": value, "config": {**config, "horizon_intervals": k}})
    write_results(path, rows, device="cpu")


def plot(results: dict[str, dict], goal: Goal, path: Path, title: str) -> bool:
    """Validation curves (mean over seeds) per method, jumps marked by their before -> after segment.
    Returns False (and writes nothing) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(8, 5))
    for method, entry in results.items():
        runs = [r for r in entry["runs"] if r.curve]
        if not runs:
            continue
        length = min(len(r.curve) for r in runs)
        steps = [runs[0].curve[i][0] for i in range(length)]
        mean = [statistics.fmean(r.curve[i][2] for r in runs) for i in range(length)]
        line, = ax.plot(steps, mean, label=f"{method} (lr {entry['lr']:g})")
        for step, before, after, _ in runs[0].jumps:
            ax.plot([step, step], [before, after], color=line.get_color(), lw=1.5, alpha=0.8)
            ax.scatter([step], [after], color=line.get_color(), s=10, marker="v")
    ax.axhline(goal.target, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(f"validation {goal.metric}")
    if goal.metric == "acc":
        ax.set_ylim(max(0.0, goal.target - 0.15), 1.0)
    ax.set_title(f"{title}\n(mean of seeds; jumps of the first seed: before→after)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
