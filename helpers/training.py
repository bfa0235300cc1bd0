"""What the training loops of the notebooks share, and none of the lesson: minibatches, a NaN stop, and
load-if-this-exact-training-was-saved. The loops themselves are in the notebooks, where their questions are.

A checkpoint is reused only when it was saved under the same settings, and the settings include a fingerprint of the
code that trains (the loss, the step, the loop): a changed answer never loads a stale model.
"""
import ast
import functools
import hashlib
import inspect
import textwrap
import time
from pathlib import Path

import torch

from .checkpoints import load_checkpoint, plain, restore, save_checkpoint


def differences(payload: dict, model: str, config: dict, settings: dict) -> str:
    """What differs between a saved checkpoint and the training asked for, in a few words."""
    if payload["model"] != model:
        return f"it holds a {payload['model']}, not a {model}"
    changed = [f"{k}" for part, asked in (("config", config), ("settings", settings))
               for k in sorted(set(payload[part]) | set(asked)) if payload[part].get(k) != asked.get(k)]
    return "changed: " + ", ".join(changed[:6])


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the message gives the step."""


def minibatches(n: int, batch_size: int, device) -> list:
    """Index tensors for one shuffled pass over n items (the last batch may be smaller)."""
    if n == 0:
        raise ValueError("no training data (0 examples): check the split or the data source.")
    return torch.randperm(n, device=device).split(batch_size)


def stop_if_diverged(losses: torch.Tensor, epoch: int, what: str = "loss") -> None:
    """Raise TrainingDiverged at the first non-finite value of an epoch's losses, naming its step."""
    bad = (~torch.isfinite(losses)).nonzero()
    if len(bad):
        step = int(bad[0])
        raise TrainingDiverged(
            f"The {what} became {losses.flatten()[step].item()} at step {step} of epoch {epoch}. Lower the learning "
            "rate, check the inputs for NaN, or compute log-probabilities from logits; no checkpoint was written.")


def _code(function) -> str:
    """What a function computes, as its syntax tree without docstrings: comments and layout do not count."""
    while isinstance(function, functools.partial):
        function = function.func
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and \
                isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    for node in tree.body:                   # the function's own name changes nothing it computes
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            node.name = "_"
    return ast.dump(tree, annotate_fields=False)


def fingerprint(*functions) -> str:
    """A short hash of the code of `functions`: part of a checkpoint's settings, so that editing any of them (the
    loss, an answer it calls, the loop) trains again instead of loading a model the old code made."""
    return hashlib.sha256("\n".join(map(_code, functions)).encode()).hexdigest()[:16]


def trained(checkpoint, settings: dict, build, train, *, retrain: bool = False):
    """(model, history): the model that `train()` returns with its history (a dict of plain values), saved to
    `checkpoint`; or, when `checkpoint` already holds a model trained under exactly these `settings`, that model
    rebuilt by `build()` with its saved weights and history. A checkpoint of this collection saved under other
    settings (the code changed: a corrected answer, say) is trained again and replaced, with a line that says so; a
    file that is no checkpoint of this collection is never overwritten. The model comes back in eval mode."""
    settings = plain(settings)
    if checkpoint is not None and not retrain and Path(checkpoint).exists():
        model = build()
        payload = load_checkpoint(checkpoint)
        saved = (payload["model"], payload["config"], payload["settings"])
        if saved == (type(model).__name__, plain(getattr(model, "config", {})), settings):
            restore(model, payload, checkpoint).eval()
            return model, {**payload["extra"]["history"], "from_checkpoint": True}
        print(f"{checkpoint} was trained under other settings or by other code ("
              f"{differences(payload, type(model).__name__, plain(getattr(model, 'config', {})), settings)}): "
              "training again, and replacing it")
    start = time.perf_counter()
    model, history = train()
    history = {**history, "seconds": round(time.perf_counter() - start, 1)}
    model.eval()
    if checkpoint is not None:
        save_checkpoint(checkpoint, model, settings, history=history)
    return model, {**history, "from_checkpoint": False}
