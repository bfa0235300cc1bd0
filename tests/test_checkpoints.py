import pytest
import torch
from torch import nn

from helpers import checkpoints
from helpers.checkpoints import CheckpointError, load_checkpoint, load_model, register_model, save_checkpoint


@register_model
class TinyNet(nn.Module):
    """A model with a config, as every model in helpers has."""

    def __init__(self, width: int = 4):
        super().__init__()
        self.config = {"width": width}
        self.layer = nn.Linear(3, width)

    def forward(self, x):
        return self.layer(x)


def test_round_trip_rebuilds_the_same_model(tmp_path):
    model = TinyNet(width=5)
    path = save_checkpoint(tmp_path / "tiny.pt", model, {"epochs": 3}, history={"train_loss": [1.0, 0.5]})
    loaded = load_model(path)
    x = torch.randn(2, 3)
    assert isinstance(loaded, TinyNet) and not loaded.training
    assert torch.equal(loaded(x), model(x))
    payload = load_checkpoint(path, "TinyNet", {"width": 5}, {"epochs": 3})
    assert payload["extra"]["history"]["train_loss"] == [1.0, 0.5]
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.pt"]


def test_a_checkpoint_of_another_model_or_configuration_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "tiny.pt", TinyNet(width=5), {"epochs": 3})
    with pytest.raises(CheckpointError, match="holds a TinyNet, not a VAE.*retrain=True"):
        load_checkpoint(path, "VAE")
    with pytest.raises(CheckpointError, match="other config.*width: saved 5, asked 6"):
        load_checkpoint(path, "TinyNet", {"width": 6})
    with pytest.raises(CheckpointError, match="other settings.*epochs: saved 3, asked 10"):
        load_checkpoint(path, "TinyNet", {"width": 5}, {"epochs": 10})


def test_a_failed_save_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "tiny.pt", TinyNet(), {"epochs": 1})
    before = path.read_bytes()

    def crash(obj, f):
        open(f, "wb").write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoints.torch, "save", crash)
    with pytest.raises(CheckpointError, match=r"Could not write .*tiny.pt \(disk full\).*previous file.*unchanged"):
        save_checkpoint(path, TinyNet(), {"epochs": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.pt"]


class Payload:
    """Unpickling this would run code; weights_only loading must refuse it."""
    ran = []

    def __reduce__(self):
        return (Payload.ran.append, ("executed",))


def test_pickled_code_is_never_executed(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "model": "TinyNet", "payload": Payload()}, path)
    with pytest.raises(CheckpointError, match="not a readable checkpoint.*Delete it"):
        load_checkpoint(path)
    assert Payload.ran == []


def test_corrupt_missing_and_foreign_files_get_clear_messages(tmp_path):
    (tmp_path / "noise.pt").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="noise.pt is not a readable checkpoint"):
        load_checkpoint(tmp_path / "noise.pt")
    with pytest.raises(FileNotFoundError, match="train the model first"):
        load_checkpoint(tmp_path / "absent.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not written by helpers.save_checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_weights_from_another_version_of_the_code_are_refused(tmp_path):
    path = save_checkpoint(tmp_path / "tiny.pt", TinyNet(width=5), {"epochs": 1})
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["extra_layer.weight"] = torch.zeros(2)  # as if the class had lost a layer since
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="another version of TinyNet.*retrain=True"):
        load_model(path)


def test_settings_it_could_not_load_back_are_saved_as_plain_types(tmp_path):
    """A numpy scalar or a tuple in the settings must not make every later load refuse the file."""
    import numpy as np

    settings = {"lr": np.float32(0.5), "betas": (0.5, 0.999), "epochs": np.int64(3)}
    path = save_checkpoint(tmp_path / "tiny.pt", TinyNet(), settings, history={"loss": [np.float64(1.5)]})
    payload = load_checkpoint(path, "TinyNet", {"width": 4}, settings)  # the same settings, asked again, match
    assert payload["settings"] == {"lr": 0.5, "betas": [0.5, 0.999], "epochs": 3}
    with pytest.raises(CheckpointError, match="Cannot save a object"):
        save_checkpoint(tmp_path / "bad.pt", TinyNet(), {"what": object()})
    assert not (tmp_path / "bad.pt").exists()


def test_an_empty_checkpoint_is_named_with_the_fix(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty.pt is empty \(0 bytes\).*Delete it"):
        load_checkpoint(tmp_path / "empty.pt")


def test_an_unreadable_checkpoint_is_not_called_corrupt(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "tiny.pt", TinyNet(), {})

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(checkpoints.torch, "load", denied)
    with pytest.raises(CheckpointError, match=r"permission denied.*chmod u\+r\) rather than deleting"):
        load_checkpoint(path)


def test_a_config_the_current_code_does_not_take_is_named(tmp_path):
    path = save_checkpoint(tmp_path / "tiny.pt", TinyNet(), {})
    payload = torch.load(path, weights_only=True)
    payload["config"]["depth"] = 3  # a key from another version of TinyNet
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="another version of TinyNet.*depth.*Train it again"):
        load_model(path)


def test_orphan_temporary_files_after_a_kill_are_ignored_by_git():
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    orphans = ["checkpoints/.vae_2d.pt.abc123.tmp", "results/.04_vae.json.abc123.tmp", "results/.04_vae.json.lock",
               "results/.staging-04_vae-abc123/04_vae.json", "notebooks/.04_vae.ipynb.abc123.tmp"]
    ignored = subprocess.run(["git", "check-ignore", *orphans], cwd=root, capture_output=True, text=True).stdout.split()
    assert sorted(ignored) == sorted(orphans)
