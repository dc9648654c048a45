"""Bad input to the command line, the zoos and the training tools: each case gets a clear error (no traceback,
the path and the repair named) before any work starts, and nothing is silently wrong."""
import json
import shutil
import subprocess
import sys

import pytest
import torch

import weightcast as wc
from weightcast.cli import main
from weightcast.zoo import build_zoo, load_trajectory, quick_spec, read_manifest
from weightcast.zoo.store import ZooFileError, save_trajectory

QUICK = quick_spec()[:4]  # four digits MLP runs of 9 snapshots (40 steps, one every 5)
FAST = ["--steps", "3", "--samples", "2", "--elements", "32", "--no-progress"]


@pytest.fixture(scope="module")
def quick_zoo(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("quick_zoo")
    build_zoo(out, QUICK, progress=False)
    return out


@pytest.fixture
def zoo_copy(quick_zoo, tmp_path):
    return shutil.copytree(quick_zoo, tmp_path / "zoo")


def train_args(zoo, out, *extra, kind="farcast"):
    return ["forecaster", "train", "--kind", kind, "--zoo", str(zoo), "--out", str(out), *FAST, *extra]


def run_error(argv, capsys) -> str:
    """Run the CLI, expect exit status 1 and return its one-line error (no traceback)."""
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("weightcast: error: ")
    return err


# --- forecaster training: windows and horizons the zoo cannot supply ---------------------------------------------

def test_window_the_runs_cannot_supply_is_refused_at_once(quick_zoo, tmp_path, capsys):
    err = run_error(train_args(quick_zoo, tmp_path / "f.safetensors", "--window", "50", kind="wnn"), capsys)
    assert "window of 50 snapshots" in err and "hold 9 to 9" in err and "Lower --window" in err
    err = run_error(train_args(quick_zoo, tmp_path / "f.safetensors", "--window", "1"), capsys)
    assert "at least 2 snapshots" in err
    assert not list(tmp_path.iterdir())
    err = run_error(train_args(tmp_path, tmp_path / "f.safetensors"), capsys)  # a folder that is not a zoo
    assert "is not a zoo: it has no manifest.json" in err


@pytest.mark.parametrize("kind, extra, wrong", [
    ("farcast", ["--held-out-zoo", "missing"], "--held-out-zoo does"),
    ("nowcast", ["--held-out-zoo", "missing", "--rounds", "3"], "--rounds, --held-out-zoo do"),
    ("nowcast", ["--reg", "0.5"], "--reg does"),
    ("wnn", ["--k-max", "8", "--spacings", "10"], "--k-max, --spacings do"),
    ("nowcast-graph", ["--elements", "64", "--max-horizon", "3"], "--max-horizon, --elements do"),
])
def test_options_of_other_kinds_are_refused(tmp_path, capsys, kind, extra, wrong):
    err = run_error(train_args(tmp_path, tmp_path / "f.safetensors", kind=kind)
                    + [str(tmp_path / e) if e == "missing" else e for e in extra], capsys)
    assert f"{wrong} not apply to --kind {kind}; drop" in err
    assert not list(tmp_path.iterdir())


def test_horizons_beyond_the_runs_are_refused_and_trained_ones_are_all_trained(quick_zoo, tmp_path, capsys):
    out = tmp_path / "f.safetensors"
    err = run_error(train_args(quick_zoo, out, "--max-horizon", "6"), capsys)  # 5 + 6 > 9 snapshots
    assert "horizon of 6" in err and "window + max horizon <= 9" in err
    assert main(train_args(quick_zoo, out, "--max-horizon", "4", "--steps", "10", "--samples", "8")) == 0
    f = wc.forecasters.get("farcast", path=out)
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["config"]["max_horizon"] == 4 == f.A.shape[0]
    assert (f.A.abs().sum(1) > 0).all()  # every horizon the card claims moved from its zero initialisation


def test_sampling_horizons_no_run_can_supply_fails_instead_of_hanging(quick_zoo):
    from weightcast.forecasters.train import ZooWindows

    windows = ZooWindows(quick_zoo, "train", window=5, max_horizon=4, strides=(1, 2))
    assert len(windows.samples(torch.Generator().manual_seed(0), 8, horizons=(4,))) == 8
    with pytest.raises(wc.errors.InputError, match="no run .* can supply"):
        windows.samples(torch.Generator().manual_seed(0), 8, horizons=(2.5,))  # stride 2 needs 14 snapshots


# --- non-finite snapshots and weights ------------------------------------------------------------------------------

def poison(zoo, index=0):
    """Put one NaN into one snapshot of run ``index`` of the zoo (its file stays a valid run file)."""
    entry = read_manifest(zoo)["runs"][index]
    snapshots, steps = load_trajectory(zoo, entry)
    first = next(iter(snapshots))
    snapshots[first][3].view(-1)[0] = float("nan")
    save_trajectory(zoo / entry["file"], snapshots, steps, entry)
    return entry["id"]


def test_a_zoo_of_only_poisoned_runs_is_refused(zoo_copy, capsys):
    bad = [poison(zoo_copy, i) for i in range(len(QUICK))]
    with pytest.warns(UserWarning, match=f"skipping run {bad[0]}.*non-finite"):
        err = run_error(train_args(zoo_copy, zoo_copy / "f.safetensors", "--max-horizon", "2"), capsys)
    assert "no usable runs" in err


def test_one_poisoned_run_is_skipped_and_the_forecaster_is_finite(zoo_copy, tmp_path, capsys):
    bad = poison(zoo_copy, 0)
    out = tmp_path / "f.safetensors"
    with pytest.warns(UserWarning, match=f"skipping run {bad} of .*: it holds non-finite snapshots"):
        assert main(train_args(zoo_copy, out, "--max-horizon", "2", kind="wnn")) == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert all(isinstance(v, float) and v == v for v in card["final"].values())
    wc.forecasters.get("wnn", path=out)  # finite, so it loads


def test_training_that_diverges_writes_nothing(quick_zoo, tmp_path, monkeypatch, capsys):
    from weightcast.forecasters import train

    real = train.farcast_predict
    monkeypatch.setattr(train, "farcast_predict", lambda A, b: real(A, b) * float("inf"))  # a diverging model
    out = tmp_path / "f.safetensors"
    err = run_error(train_args(quick_zoo, out, "--max-horizon", "2"), capsys)
    assert "non-finite" in err and "Lower --lr" in err
    assert not list(tmp_path.iterdir())


def test_the_forecaster_loader_rejects_non_finite_weights(tmp_path):
    from safetensors.torch import save

    from weightcast.forecasters import ForecasterFileError

    A = torch.zeros(6, 5)
    A[2, 1] = float("inf")
    meta = {"format": "weightcast-weights", "version": "1", "kind": "farcast",
            "config": json.dumps({"lags": 5, "max_horizon": 6})}
    (tmp_path / "inf.safetensors").write_bytes(save({"A": A}, metadata=meta))
    with pytest.raises(ForecasterFileError, match=r"inf.safetensors.*non-finite.*weightcast forecaster train"):
        wc.forecasters.get("farcast", path=tmp_path / "inf.safetensors")


# --- argparse-level validation -------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["forecaster", "train", "--kind", "farcast", "--zoo", ".", "--out", "f.safetensors", "--steps", "0"],
    ["forecaster", "train", "--kind", "farcast", "--zoo", ".", "--out", "f.safetensors", "--steps", "-5"],
    ["forecaster", "train", "--kind", "farcast", "--zoo", ".", "--out", "f.safetensors", "--lr", "nan"],
    ["zoo", "build", "--out", "z", "--max-runs", "-3"],
    ["zoo", "build", "--out", "z", "--threads", "0"],
    ["zoo", "build", "--out", "z", "--data-dir", "/nonexistent"],
    ["demo", "--seeds", "-1"],
    ["demo", "--seeds", "0"],
    ["demo", "--threads", "0"],
    ["ae", "train", "--zoo", ".", "--out", "a.safetensors", "--steps", "0"],
    ["ae", "train", "--zoo", ".", "--out", "a.safetensors", "--latent", "x"],
])
def test_bad_numbers_and_paths_are_argparse_errors(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "error: argument" in err and ("out of range" in err or "not" in err)


def test_validate_refuses_size_zero_and_documents_quick(capsys):
    from weightcast import validate

    with pytest.raises(SystemExit):
        validate.main(["--sizes", "0"])
    assert "--sizes: 0 is out of range" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        validate.main(["--help"])
    help_text = capsys.readouterr().out
    assert "--quick" in help_text and "no short run" in help_text and "(default: weightcast-validate.json)" in help_text


def test_help_shows_defaults_and_needs_no_torch():
    code = ("import sys\nfrom weightcast.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "zoo" in out and "forecaster" in out and out.strip().endswith("False")
    with pytest.raises(SystemExit):
        main(["forecaster", "train", "--help"])


def test_help_of_subcommands_shows_defaults(capsys):
    for argv in (["forecaster", "train"], ["zoo", "build"], ["ae", "train"], ["demo"]):
        with pytest.raises(SystemExit):
            main([*argv, "--help"])
        assert "(default: " in capsys.readouterr().out, argv


def test_subpackages_are_attributes():
    code = "import weightcast as wc\nprint(wc.data.get_task, wc.models.get, wc.zoo.build_zoo, wc.study.run_study)"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    with pytest.raises(AttributeError):
        wc.no_such_thing


# --- zoo files: verified when read, repaired by resuming -----------------------------------------------------------

def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def test_a_truncated_run_file_is_named_and_rebuilt_on_resume(zoo_copy, capsys):
    entry = read_manifest(zoo_copy)["runs"][1]
    path = zoo_copy / entry["file"]
    truncate(path)
    with pytest.raises(ZooFileError, match=rf"{entry['file']}.*truncated.*weightcast zoo build --out"):
        load_trajectory(zoo_copy, entry)
    assert main(["zoo", "info", str(zoo_copy)]) == 1
    assert f"broken run {entry['id']}" in capsys.readouterr().err
    err = run_error(train_args(zoo_copy, zoo_copy / "f.safetensors", "--max-horizon", "2"), capsys)
    assert entry["file"] in err and "rebuilds the broken ones" in err
    with pytest.warns(UserWarning, match=f"run {entry['id']}.*rebuilding it"):
        build_zoo(zoo_copy, QUICK, progress=False)
    assert load_trajectory(zoo_copy, entry)[1].shape == (entry["num_records"],)
    assert main(["zoo", "info", str(zoo_copy)]) == 0


@pytest.mark.parametrize("damage", ["cut", "not json", "wrong structure"])
def test_a_damaged_manifest_is_named_and_recovered_on_resume(zoo_copy, damage, capsys):
    manifest = zoo_copy / "manifest.json"
    text = manifest.read_text()
    manifest.write_text({"cut": text[:len(text) // 2], "not json": "<html>",
                         "wrong structure": json.dumps({"format": "weightcast-zoo", "version": 1, "runs": {}})}[damage])
    with pytest.raises(ZooFileError, match=r"manifest.json is damaged.*weightcast zoo build --out"):
        read_manifest(zoo_copy)
    assert main(["zoo", "info", str(zoo_copy)]) == 1
    assert "Traceback" not in capsys.readouterr().err
    mtimes = {p.name: p.stat().st_mtime_ns for p in (zoo_copy / "runs").iterdir()}
    with pytest.warns(UserWarning, match="recovered 4 intact runs"):
        build_zoo(zoo_copy, QUICK, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in (zoo_copy / "runs").iterdir()} == mtimes  # nothing retrained
    assert sorted(e["id"] for e in read_manifest(zoo_copy)["runs"]) == sorted(s.run_id for s in QUICK)
    assert len(list(zoo_copy.glob("manifest.json.damaged-*"))) == 1  # kept, not deleted


def test_data_is_checked_before_any_run_trains(tmp_path, monkeypatch, capsys):
    from weightcast.zoo import RunSpec

    specs = [QUICK[0], RunSpec("mnist", "mlp", {"widths": [8]}, steps=10, record_every=5)]
    with pytest.raises(wc.errors.InputError, match="cannot load the data of task 'mnist'"):
        build_zoo(tmp_path / "z", specs, data_dir=tmp_path / "nowhere", progress=False)
    assert read_manifest(tmp_path / "z")["runs"] == []  # the digits run was not trained first
    monkeypatch.setenv("WEIGHTCAST_DATA", str(tmp_path / "nowhere"))
    err = run_error(["zoo", "build", "--out", str(tmp_path / "z2")], capsys)
    assert "WEIGHTCAST_DATA" in err and "not a directory" in err


def test_quick_with_a_data_dir_says_it_is_not_used(tmp_path, capsys):
    assert main(["zoo", "build", "--out", str(tmp_path / "z"), "--quick", "--data-dir", str(tmp_path),
                 "--max-runs", "1", "--no-progress"]) == 0
    assert "is not used" in capsys.readouterr().err


def test_ctrl_c_on_zoo_build_says_how_to_resume(tmp_path, monkeypatch, capsys):
    from weightcast.zoo import build

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(build, "train_run", interrupted)
    assert main(["zoo", "build", "--out", str(tmp_path / "z"), "--quick", "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert "interrupted; run the same command to resume" in err and "Traceback" not in err


# --- output paths and weight files ---------------------------------------------------------------------------------

def test_out_a_directory_is_refused_before_training(quick_zoo, tmp_path, monkeypatch, capsys):
    from weightcast.forecasters import train

    monkeypatch.setattr(train, "train", lambda *a, **k: pytest.fail("trained before checking --out"))
    err = run_error(train_args(quick_zoo, tmp_path), capsys)
    assert "is a directory" in err
    err = run_error(["ae", "train", "--zoo", str(quick_zoo), "--out", str(tmp_path / "ae.json")], capsys)
    assert "must end in .safetensors" in err
    assert not list(tmp_path.iterdir())


def test_ae_eval_of_a_broken_file_names_it(quick_zoo, tmp_path, capsys):
    bad = tmp_path / "ae.safetensors"
    bad.write_bytes(b"\x00" * 100)
    err = run_error(["ae", "eval", str(bad), "--zoo", str(quick_zoo)], capsys)
    assert str(bad) in err and "weightcast ae train" in err
