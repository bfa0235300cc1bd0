import json
import math

import numpy as np
import pytest
import torch

from helpers import read_records, record, runtime


def test_records_merge_by_question_id(tmp_path):
    path = tmp_path / "01_x.json"
    record("A1", {"exact": 0.25, "n": 10}, notebook="01_x", directory=tmp_path)
    record("A3", {"kl": torch.tensor(1.5), "grid": np.arange(3)}, notebook="01_x", directory=tmp_path)
    record("A1", {"exact": 0.5}, notebook="01_x", directory=tmp_path)
    assert read_records(path) == {"A1": {"exact": 0.5}, "A3": {"kl": 1.5, "grid": [0, 1, 2]}}
    assert [p for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == [path]  # no temporary file left


def test_infinity_is_spelled_out_in_strict_json_and_nan_is_refused(tmp_path):
    path = tmp_path / "03_x.json"
    record("C3e", {"kl": float("inf"), "minus": -math.inf, "w1": 0.5}, notebook="03_x", directory=tmp_path)
    assert "Infinity" not in path.read_text()  # not JSON: other languages' parsers reject it

    def strict(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    assert json.loads(path.read_text(), parse_constant=strict)["C3e"] == {"kl": "inf", "minus": "-inf", "w1": 0.5}
    with pytest.raises(ValueError, match="NaN"):
        record("C3e", {"kl": float("nan")}, notebook="03_x", directory=tmp_path)
    assert read_records(path)["C3e"]["w1"] == 0.5  # the refused record did not clobber the file


def test_record_uses_the_notebook_set_up(monkeypatch, capsys):
    monkeypatch.setenv("DGM_MODE", "quick")
    runtime.start("05_example")
    record("X", {"value": 1})
    assert read_records(runtime.ROOT / ".quick" / "results" / "05_example.json") == {"X": {"value": 1}}
    assert "recorded X in .quick/results/05_example.json" in capsys.readouterr().out


def test_unrecordable_values_are_named(tmp_path):
    with pytest.raises(TypeError, match="Cannot record a object"):
        record("X", {"value": object()}, notebook="n", directory=tmp_path)
    with pytest.raises(ValueError, match="non-empty dict"):
        record("X", {}, notebook="n", directory=tmp_path)


def test_concurrent_records_from_two_processes_are_all_kept(tmp_path):
    """Graders run notebooks side by side: the read-merge-write is locked, so no update is lost."""
    import subprocess
    import sys

    script = ("import sys; from helpers import record\n"
              "for i in range(60): record(f'{sys.argv[1]}{i}', {'v': i}, notebook='nb', directory=sys.argv[2])")
    workers = [subprocess.Popen([sys.executable, "-c", script, tag, str(tmp_path)], stdout=subprocess.DEVNULL)
               for tag in ("a", "b")]
    assert all(w.wait(timeout=120) == 0 for w in workers)
    assert len(read_records(tmp_path / "nb.json")) == 120


def test_a_damaged_records_file_is_named_with_the_fix(tmp_path):
    (tmp_path / "nb.json").write_text('{"A1": {"v": 1')
    with pytest.raises(ValueError, match=r"nb.json is not valid JSON.*git checkout"):
        record("A2", {"v": 2}, notebook="nb", directory=tmp_path)
    assert (tmp_path / "nb.json").read_text() == '{"A1": {"v": 1'  # nothing overwritten


def test_notebook_names_cannot_escape_the_results_folder(tmp_path):
    with pytest.raises(ValueError, match="not a notebook name"):
        record("A1", {"v": 1}, notebook="../escape", directory=tmp_path)
    assert not (tmp_path.parent / "escape.json").exists()


def test_numbers_keep_six_significant_digits_so_that_records_repeat_across_machines(tmp_path):
    """A float32 sum differs from one CPU to the next in its 7th or 8th digit: those digits are not recorded."""
    record("A9", {"elbo": -144.27123456, "tiny": 1.2345678e-5, "exact": 0.5, "count": 123456789},
           notebook="04_x", directory=tmp_path)
    assert read_records(tmp_path / "04_x.json")["A9"] == {"elbo": -144.271, "tiny": 1.23457e-05, "exact": 0.5,
                                                         "count": 123456789}
    record("A9", {"elbo": -144.27123789}, notebook="04_x", directory=tmp_path)   # the same figure from another CPU
    assert read_records(tmp_path / "04_x.json")["A9"] == {"elbo": -144.271}


def test_records_work_where_fcntl_does_not_exist(monkeypatch, tmp_path):
    """Windows has no fcntl: the lock is filelock's, which works there as here."""
    import importlib
    import sys

    monkeypatch.setitem(sys.modules, "fcntl", None)          # `import fcntl` now raises ImportError
    module = importlib.reload(sys.modules["helpers.records"])
    module.record("A1", {"v": 1}, notebook="nb", directory=tmp_path)
    assert module.read_records(tmp_path / "nb.json") == {"A1": {"v": 1}}
