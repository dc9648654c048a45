"""The one results schema (weightcast.results): rows, provenance, atomic write, append, refusals."""
import pytest

from weightcast.results import COLUMNS, read_results, write_results


def _row(**kw):
    return dict(benchmark="jump", name="linear", metric="time", unit="ms", x_name="params", x_value=10,
                value=1.5, q20=1.4, q80=1.6, **kw)


def test_write_and_read_back_with_provenance(tmp_path):
    path = write_results(tmp_path / "r.csv", [_row(config={"window": 5})], device="cpu")
    rows = read_results(path)
    assert len(rows) == 1 and tuple(rows[0]) == COLUMNS
    assert rows[0]["value"] == "1.5" and rows[0]["config"] == '{"window": 5}'
    assert rows[0]["torch"] and rows[0]["timestamp"] and rows[0]["commit"] and rows[0]["device"]
    assert not list(tmp_path.glob(".*.tmp"))


def test_append_keeps_earlier_rows(tmp_path):
    path = tmp_path / "r.csv"
    write_results(path, [_row()], device="cpu")
    write_results(path, [_row(seed=2)], device="cpu", append=True)
    assert [r["seed"] for r in read_results(path)] == ["", "2"]
    write_results(path, [_row()], device="cpu")
    assert len(read_results(path)) == 1


def test_bad_rows_and_foreign_files_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown columns"):
        write_results(tmp_path / "r.csv", [_row(speed=3)], device="cpu")
    with pytest.raises(ValueError, match="lacks"):
        write_results(tmp_path / "r.csv", [{"benchmark": "b", "name": "n", "metric": "m"}], device="cpu")
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a weightcast results file"):
        write_results(other, [_row()], device="cpu", append=True)
