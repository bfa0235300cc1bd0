"""Checkpoints: written atomically, read with weights_only=True, refused when made for another model."""
import os
import tempfile
from pathlib import Path

import torch

FORMAT = 1
MODELS = {}


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used here; the message says why and what to do."""


def register_model(cls):
    """Class decorator: lets load_model() rebuild this model from its saved config."""
    MODELS[cls.__name__] = cls
    return cls


def save_checkpoint(path, model: torch.nn.Module, settings: dict | None = None, **extra) -> Path:
    """Save weights, model.config (rebuilds it), the training settings and plain extras; never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "model": type(model).__name__,
        "config": dict(getattr(model, "config", {})),
        "settings": dict(settings or {}),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": extra,
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a checkpoint is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path, model: str | None = None, config: dict | None = None, settings: dict | None = None,
                    map_location="cpu") -> dict:
    """The saved payload, after checking it was made for `model` with `config` and `settings` (when given)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No checkpoint at {path}: train the model first (run its notebook).")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path} is not a readable checkpoint of this collection ({type(error).__name__}: "
                              f"{str(error).splitlines()[0][:200]}). Delete it and train again.") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} was not written by helpers.save_checkpoint. Delete it and train again.")
    fix = "Delete it, or train again with retrain=True, to replace it."
    if model is not None and payload["model"] != model:
        raise CheckpointError(f"{path} holds a {payload['model']}, not a {model}. {fix}")
    for key, asked in (("config", config), ("settings", settings)):
        if asked is not None and payload[key] != asked:
            raise CheckpointError(f"{path} was made with other {key} ({_differences(payload[key], asked)}). {fix}")
    return payload


def _differences(saved: dict, asked: dict) -> str:
    keys = sorted(set(saved) | set(asked))
    return ", ".join(f"{k}: saved {saved.get(k)!r}, asked {asked.get(k)!r}"
                     for k in keys if saved.get(k) != asked.get(k))


def restore(model: torch.nn.Module, payload: dict, path) -> torch.nn.Module:
    """Load the payload's weights into `model`, refusing weights saved by another version of its code."""
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as error:
        raise CheckpointError(f"{path} was saved by another version of {type(model).__name__} (its weights do not fit: "
                              f"{str(error).splitlines()[1].strip()[:160]}). Delete it, or train again with "
                              "retrain=True, to replace it.") from error
    return model


def load_model(path, device=None) -> torch.nn.Module:
    """Rebuild any registered model from its checkpoint, in eval mode on `device`."""
    payload = load_checkpoint(path)
    if payload["model"] not in MODELS:
        raise CheckpointError(f"{path} holds a {payload['model']}, which helpers does not define.")
    model = restore(MODELS[payload["model"]](**payload["config"]), payload, path)
    return model.to(device or "cpu").eval()
