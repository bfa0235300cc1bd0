"""Checkpoints: written atomically, read with weights_only=True, refused when made for another model."""
from pathlib import Path

import numpy as np
import torch

from .runtime import write_atomically

FORMAT = 1
MODELS = {}


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used here; the message says why and what to do."""


def register_model(cls):
    """Class decorator: lets load_model() rebuild this model from its saved config."""
    MODELS[cls.__name__] = cls
    return cls


def plain(value):
    """The value in types that weights_only loading accepts back (dicts, lists, str, int, float, bool, None, CPU
    tensors) and that compare equal between a saved key and the same key asked again (a tuple becomes a list)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray):
        return torch.as_tensor(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise CheckpointError(f"Cannot save a {type(value).__name__} in a checkpoint: use numbers, strings, lists, "
                          "dicts or tensors.")


def save_checkpoint(path, model: torch.nn.Module, settings: dict | None = None, **extra) -> Path:
    """Save weights, model.config (rebuilds it), the training settings and plain extras; never half a file.

    The temporary file is loaded back the way load_checkpoint reads it before it replaces `path`, so a file that
    could not be read (a disk that filled up, a value weights_only refuses) never takes the place of a good one.
    """
    path = Path(path)
    payload = {
        "format": FORMAT,
        "model": type(model).__name__,
        "config": plain(dict(getattr(model, "config", {}))),
        "settings": plain(dict(settings or {})),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": plain(extra),
    }

    def write(tmp):
        torch.save(payload, tmp)
        torch.load(tmp, map_location="cpu", weights_only=True)

    try:
        return write_atomically(path, write)
    except (OSError, RuntimeError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise CheckpointError(f"Could not write {path} ({first_line}). Is the disk full or the folder read-only? "
                              "Free some space and run the cell again; the previous file, if any, is unchanged."
                              ) from error


def load_checkpoint(path, model: str | None = None, config: dict | None = None, settings: dict | None = None) -> dict:
    """The saved payload, after checking it was made for `model` with `config` and `settings` (when given)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No checkpoint at {path}: train the model first (run its notebook).")
    if path.is_file() and path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes), perhaps from an interrupted copy. Delete it and train again "
                              "(or restore it with `git checkout` if it is a committed checkpoint).")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError as error:
        raise CheckpointError(f"{path} cannot be read by this user (permission denied). The file may well be fine: "
                              "give yourself read access (chmod u+r) rather than deleting it.") from error
    except Exception as error:
        first_line = (str(error).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(f"{path} is not a readable checkpoint of this collection ({type(error).__name__}: "
                              f"{first_line}). Delete it and train again.") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} was not written by helpers.save_checkpoint. Delete it and train again.")
    fix = "Delete it, or train again with retrain=True, to replace it."
    if model is not None and payload["model"] != model:
        raise CheckpointError(f"{path} holds a {payload['model']}, not a {model}. {fix}")
    for key, asked in (("config", config), ("settings", settings)):
        asked = None if asked is None else plain(asked)
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
    try:
        model = MODELS[payload["model"]](**payload["config"])
    except TypeError as error:
        raise CheckpointError(f"{path} was saved by another version of {payload['model']}: its config "
                              f"{payload['config']} does not fit the current code ({error}). Train it again."
                              ) from error
    model = restore(model, payload, path)
    return model.to(device or "cpu").eval()
