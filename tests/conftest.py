import pytest
import torch

from helpers import runtime


@pytest.fixture(autouse=True)
def isolated_run(monkeypatch, tmp_path):
    """Every test starts with no notebook set up and writes nothing inside the repository."""
    monkeypatch.setattr(runtime, "_current", {})
    monkeypatch.setattr(runtime, "ROOT", tmp_path / "repo")
    monkeypatch.delenv("DGM_DATA_SOURCE", raising=False)
    monkeypatch.setenv("DGM_DATA", str(tmp_path / "no-data"))
    torch.manual_seed(0)
