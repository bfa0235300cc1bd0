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
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_infinity_is_recorded_and_nan_is_refused(tmp_path):
    path = tmp_path / "03_x.json"
    record("C3e", {"kl": float("inf"), "w1": 0.5}, notebook="03_x", directory=tmp_path)
    assert "Infinity" in path.read_text()
    assert math.isinf(json.loads(path.read_text())["C3e"]["kl"])
    with pytest.raises(ValueError, match="NaN"):
        record("C3e", {"kl": float("nan")}, notebook="03_x", directory=tmp_path)
    assert read_records(path)["C3e"]["w1"] == 0.5  # the refused record did not clobber the file


def test_record_uses_the_notebook_set_up(monkeypatch, capsys):
    monkeypatch.setenv("DGM_MODE", "quick")
    runtime.setup("05_example")
    record("X", {"value": 1})
    assert read_records(runtime.ROOT / ".quick" / "results" / "05_example.json") == {"X": {"value": 1}}
    assert "recorded X in .quick/results/05_example.json" in capsys.readouterr().out


def test_unrecordable_values_are_named(tmp_path):
    with pytest.raises(TypeError, match="Cannot record a object"):
        record("X", {"value": object()}, notebook="n", directory=tmp_path)
    with pytest.raises(ValueError, match="non-empty dict"):
        record("X", {}, notebook="n", directory=tmp_path)
