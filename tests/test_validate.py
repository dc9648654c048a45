"""The validation suite (python -m weightcast.validate) on the CPU backends available here."""
import json

from weightcast import ops, validate


def test_every_backend_passes_its_correctness_cases():
    for backend in ops.available_backends("cpu"):
        rows = validate.check_backend(backend, "cpu", sizes=(1, 7, 1023, 4099))
        assert rows and all(r["record_exact"] and r["lincomb_within_tolerance"] for r in rows), backend
        assert {r["params"] for r in rows} >= {"float32", "float16"}


def test_a_wrong_kernel_is_caught(monkeypatch):
    """The check can fail: a lincomb that is off by 1e-3 relative is reported."""
    from weightcast.ops import reference

    real = reference.lincomb

    def off(out, history, coeffs):
        real(out, history, coeffs)
        out.mul_(1.001)

    monkeypatch.setattr(reference, "lincomb", off)
    rows = validate.check_backend("reference", "cpu", sizes=(7, 1023))
    assert not all(r["lincomb_within_tolerance"] for r in rows if r["n"] > 1)


def test_report_is_written(tmp_path):
    out = tmp_path / "report.json"
    assert validate.main(["--device", "cpu", "--sizes", "10000", "--skip-study", "--quick", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["passed"] and report["environment"]["torch"]
    assert {row["backend"] for row in report["speed"]} >= {"reference"}
