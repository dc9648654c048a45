"""Training-loop jumps (NiNo's schedule with a decaying horizon, the multi-horizon guard, clipping) and the study's
baselines (cosine, schedule-free, EMA, Lookahead(AdamW))."""
import math

import pytest
import torch

from weightcast import data, models
from weightcast.study import STUDY_TASKS
from weightcast.forecasters import get
from weightcast.study.jumps import Jumps, linear_predictor, nowcast_predictor
from weightcast.study.methods import Schedule, base_method, check_method, ema_decay, forecaster_of, options_of
from weightcast.study.run import AFTER_STEPS, train_run


def test_study_schedule_is_the_optimizers_decaying_schedule():
    # ANCHORS.md: k_j = round(linspace(40^(1/2), 1, n)^2) = 40, 33, 26, 21, 16, 11, 8, 5, 3, 1 over 10 jumps
    assert Schedule(window=5, record_every=200, k_max=40).ks(10_000) == [40, 33, 26, 21, 16, 11, 8, 5, 3, 1]
    assert Schedule(record_every=10, k_max=8).ks(30) == []


def test_method_names():
    assert base_method("jump-adamw:nowcast+guard+clip") == "adamw"
    assert forecaster_of("jump-adamw:nowcast+guard+clip") == "nowcast"
    assert options_of("jump-adamw:nowcast+guard+clip") == {"guard", "clip"}
    assert base_method("forecast-sgd:wnn") == "sgd" and base_method("ema-adamw") == "ema-adamw"
    assert base_method("jump-slow-ema-adamw:nowcast") == "slow-ema-adamw"
    # the slow average lags about ten record intervals: decay 0.999 at records 100 steps apart
    assert ema_decay("jump-slow-ema-adamw:nowcast", Schedule(record_every=100)) == pytest.approx(0.999)
    assert ema_decay("ema-adamw", Schedule(record_every=100)) == 0.99 and ema_decay("adamw", Schedule()) is None
    # "+lag<N>": the slow average lags N record intervals instead, with or without jumps
    assert base_method("slow-ema-adamw+lag3") == "slow-ema-adamw"
    assert ema_decay("jump-slow-ema-adamw:nowcast+lag3", Schedule(record_every=100)) == pytest.approx(1 - 1 / 300)
    assert ema_decay("slow-ema-adamw+lag5", Schedule(record_every=10)) == pytest.approx(0.98)
    for bad in ("ema-adamw+lag3", "slow-ema-adamw+lag0", "jump-slow-ema-adamw:nowcast+lag2+lag3"):
        with pytest.raises(ValueError, match="lag"):
            ema_decay(bad, Schedule())


@pytest.mark.parametrize("method, says", [
    ("jump-slow-ema-adamw", "names its forecaster after a colon"),
    ("jump-slow-ema-adamw:nowcast+guard-err", r"\['guard-err'\] do not apply"),
    ("slow-ema-adamw+lagx", r"\['lagx'\] do not apply"),
    ("slow-ema-adamw+guard", r"\['guard'\] do not apply"),
    ("slow-ema-sgd", "unknown method 'slow-ema-sgd'; baselines"),
    ("jump-adamw:wnn", "forecaster in"),
    ("forecast-adamw:nope", "forecaster in"),
])
def test_bad_method_names_are_refused_before_the_first_run(method, says):
    with pytest.raises(ValueError, match=says):
        check_method(method)
    from weightcast.study import run_study
    with pytest.raises(ValueError, match=says):  # no run happens: a study with a bad name fails at once
        run_study(STUDY_TASKS["digits-mlp"], ["adamw", method], seeds=1, lrs={"adamw": (1e-2,)}, budget=10,
                  progress=False)


def _line_run(ks, guard=None, clip=None, steps=10):
    p = torch.zeros(6)
    jumps = Jumps([p], linear_predictor(5), window=5, record_every=2, ks=ks, guard=guard, clip=clip)
    for t in range(1, steps + 1):
        p += 1.0  # one unit per step: a straight line
        jumps.after_step(t)
    return p, jumps


def test_jump_goes_k_record_intervals_ahead_on_a_line():
    p, jumps = _line_run([3])
    assert jumps.num_jumps == 1 and jumps.chosen == [3]
    torch.testing.assert_close(p, torch.full((6,), 10.0 + 3 * 2))


def test_a_constant_horizon_schedule_drives_the_nowcaster():
    # a constant horizon in steps gives k = horizon / record_every as a float; the nowcaster takes a whole one
    ks = Schedule(window=5, record_every=10, horizon=20).ks(100)
    assert ks == [2, 2]
    p = torch.zeros(6, 4)
    jumps = Jumps([p], nowcast_predictor(get("nowcast"), ["fc.weight"]), window=5, record_every=10, ks=ks)
    for t in range(1, 51):
        p += 0.01
        jumps.after_step(t)
    assert jumps.chosen == [2] and bool(torch.isfinite(p).all())


def test_guard_keeps_the_best_candidate_and_can_refuse():
    # the guard's loss is the distance to 14: of k = 4, 2, 1 (steps 8, 4, 2 ahead of 10) the best is k = 2
    p, jumps = _line_run([4], guard=lambda: 0.0)
    assert jumps.chosen == [0]  # nothing beats a loss of 0 before the jump: the weights stay
    torch.testing.assert_close(p, torch.full((6,), 10.0))
    holder = {}
    p = torch.zeros(6)
    holder["p"] = p
    jumps = Jumps([p], linear_predictor(5), window=5, record_every=2, ks=[4],
                  guard=lambda: float((holder["p"] - 14).abs().mean()))
    for t in range(1, 11):
        p += 1.0
        jumps.after_step(t)
    assert jumps.chosen == [2]
    torch.testing.assert_close(p, torch.full((6,), 14.0))


def test_clip_bounds_each_move_about_the_tensors_mean_move():
    p = torch.zeros(50)
    speed = torch.ones(50)
    speed[0] = 100.0  # one outlier element
    jumps = Jumps([p], linear_predictor(5), window=5, record_every=1, ks=[5], clip=1.0)
    for t in range(1, 6):
        before = p.clone()
        p += speed
        jumps.after_step(t)
    assert jumps.num_jumps == 1
    moved = p - before - speed  # the jump's move (the last step's update removed)
    moves = 5 * speed  # the unclipped move
    assert float(moved[0]) <= float(moves.mean() + moves.std()) + 1e-4 < float(moves[0])
    torch.testing.assert_close(moved[1:], moves[1:])


@pytest.mark.parametrize("drift", [torch.ones(4), torch.tensor([1.0, 1.0, 1.0, 1.001])])
def test_clip_keeps_the_move_of_a_tensor_whose_elements_move_together(drift):
    """Clipped about zero, a uniform drift (spread 0) was clipped to no move at all, silently."""
    p = torch.zeros(4)
    jumps = Jumps([p], linear_predictor(5), window=5, record_every=1, ks=[3], clip=3.0)
    for t in range(1, 6):
        p += drift
        jumps.after_step(t)
    torch.testing.assert_close(p, 8 * drift)


@pytest.mark.parametrize("method", ["jump-adamw:linear+guard", "adamw-cosine", "schedulefree-adamw", "ema-adamw",
                                    "slow-ema-adamw+lag3", "jump-slow-ema-adamw:nowcast+lag3+guard",
                                    "lookahead-adamw"])
def test_study_methods_run(method):
    study = STUDY_TASKS["digits-mlp"]
    task = data.get_task(study.task)

    def make():
        return models.get(study.arch, **task.model_kwargs(), **study.model_kwargs)

    budget = 150
    result = train_run(task, make, method, 3e-3, 1, study.goal, budget, 50, study.batch_size,
                       Schedule(window=5, record_every=10, k_max=8))
    assert not result.diverged and len(result.curve) == 3 and result.final > 0.5
    if method.startswith("jump-"):
        assert [j[0] for j in result.jumps] == [50, 100, 150]
        assert all(not math.isnan(j[3]) for j in result.jumps if j[0] + AFTER_STEPS <= budget)
        assert len(result.horizons) == 3 and all(h in (0, 1, 2, 4, 8, 5, 3) for h in result.horizons)


def test_ema_moves_with_each_jump():
    """jump-ema-adamw judges the EMA of the weights; the EMA is shifted by each jump's displacement, so the judged
    metric changes across a jump (without the shift the EMA would not move between the two measurements)."""
    study = STUDY_TASKS["digits-mlp"]
    task = data.get_task(study.task)

    def make():
        return models.get(study.arch, **task.model_kwargs(), **study.model_kwargs)

    result = train_run(task, make, "jump-ema-adamw:linear", 3e-3, 1, study.goal, 100, 50, study.batch_size,
                       Schedule(window=5, record_every=10, k_max=8))
    assert [j[0] for j in result.jumps] == [50, 100]
    assert any(before != after for _, before, after, _ in result.jumps)


def test_slow_ema_jumps_move_the_average_and_leave_the_trained_weights():
    """jump-slow-ema-adamw forecasts the slow average's own trajectory and moves only the average: the weights AdamW
    trains end exactly where slow-ema-adamw's do, while the judged average changes across the jumps."""
    study = STUDY_TASKS["digits-mlp"]
    task = data.get_task(study.task)
    built = []

    def make():
        built.append(models.get(study.arch, **task.model_kwargs(), **study.model_kwargs))
        return built[-1]

    runs = [train_run(task, make, method, 3e-3, 1, study.goal, 100, 50, study.batch_size,
                      Schedule(window=5, record_every=10, k_max=8))
            for method in ("slow-ema-adamw", "jump-slow-ema-adamw:nowcast")]
    assert [j[0] for j in runs[1].jumps] == [50, 100] and runs[0].jumps == []
    assert any(before != after for _, before, after, _ in runs[1].jumps)
    for plain, jumped in zip(built[0].parameters(), built[1].parameters()):
        assert torch.equal(plain, jumped)
    with pytest.raises(ValueError, match=r"\['clip'\] do not apply"):
        train_run(task, make, "jump-slow-ema-adamw:nowcast+clip", 3e-3, 1, study.goal, 100, 50, study.batch_size,
                  Schedule(window=5, record_every=10, k_max=8))


def test_quick_demo_writes_its_table_csv_and_plot(tmp_path):
    from weightcast.study.demo import DEMO_METHODS, run_demo

    text = run_demo(tmp_path, seeds=1, quick=True)
    assert all(m in text for m in DEMO_METHODS)
    adamw = next(line for line in text.splitlines() if line.startswith("| adamw |"))
    assert "| 1/1 |" in adamw and "| 1.00× |" in adamw   # AdamW reaches the quick goal: the table compares
    assert (tmp_path / "tta_digits-mlp.md").exists() and (tmp_path / "tta_digits-mlp.png").exists()
    header = (tmp_path / "tta_digits-mlp.csv").read_text().splitlines()[0]
    assert header.startswith("benchmark,name,metric,unit")


def test_the_slow_average_and_its_jumps_are_each_tuned_over_the_lag():
    from weightcast.study import run_study
    from weightcast.study.study import SLOW_EMA_LAGS

    results = run_study(STUDY_TASKS["digits-mlp"], ["slow-ema-adamw", "jump-slow-ema-adamw:nowcast", "adamw"],
                        seeds=1, lrs={"adamw": (1e-2,)}, budget=100, progress=False)
    base = next(name for name in results if name.startswith("slow-ema-adamw+lag"))
    tried = [r.method for r in results[base]["tuning"]]
    assert tried == [f"slow-ema-adamw+lag{lag}" for lag in SLOW_EMA_LAGS] and base in tried
    jumps = next(name for name in results if name.startswith("jump-slow-ema-adamw:nowcast+lag"))
    tried = [r.method for r in results[jumps]["tuning"]]
    assert tried == [f"jump-slow-ema-adamw:nowcast+lag{lag}" for lag in SLOW_EMA_LAGS] and jumps in tried
    assert set(results) == {base, jumps, "adamw"} and results[jumps]["lr"] == results[base]["lr"]
    assert results["adamw"]["tuning"] == [] and all(len(e["runs"]) == 1 for e in results.values())
