"""One small training loop: minibatches from device tensors, progress bar, NaN stop, early stopping, caching."""
import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .checkpoints import load_checkpoint, restore, save_checkpoint


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the message gives the step."""


@dataclass
class History:
    """Per-epoch mean training loss, validation loss, and how the run ended."""
    train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False
    seconds: float = 0.0
    from_checkpoint: bool = False
    snapshots: dict = field(default_factory=dict)  # epoch -> what snapshot(epoch, model) returned


def minibatches(n: int, batch_size: int, device) -> list:
    """Index tensors for one shuffled pass over n items (the last batch may be smaller)."""
    return torch.randperm(n, device=device).split(batch_size)


def fit(model, loss_fn, data, optimizer, *, epochs: int, batch_size: int, validate=None, patience: int | None = None,
        resample=None, snapshot=None, checkpoint=None, settings: dict | None = None, retrain: bool = False,
        desc: str = "train"):
    """Minimise loss_fn(model, *batch) over minibatches of `data` (a tensor or tuple of tensors).

    validate(model) -> validation loss, once per epoch; with `patience`, stop after that many epochs
    without improvement and keep the best weights. resample(x) -> x replaces the first tensor every
    epoch (dynamic binarisation). snapshot(epoch, model) runs after each epoch (1-based); what it
    returns, if not None, is kept in history.snapshots. With `checkpoint`, a matching saved model is
    loaded instead of training, and the trained one is saved there (with its history).
    """
    cached = cached_history(model, checkpoint, settings, retrain, History)
    if cached is not None:
        return cached

    data = data if isinstance(data, tuple) else (data,)
    history, best_loss, best_state = History(), float("inf"), None
    start = time.perf_counter()
    bar = tqdm(range(epochs), desc=desc, unit="epoch")
    for epoch in bar:
        model.train()
        epoch_data = (resample(data[0]), *data[1:]) if resample else data
        batches = minibatches(len(data[0]), batch_size, data[0].device)
        # losses stay on the device and are checked once an epoch: no per-step host sync
        losses = torch.empty(len(batches), device=data[0].device)
        for step, index in enumerate(batches):
            loss = loss_fn(model, *(t[index] for t in epoch_data))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses[step] = loss.detach()
        stop_if_diverged(losses, epoch, len(batches))
        history.train_loss.append(losses.mean().item())
        take_snapshot(snapshot, epoch + 1, model, history.snapshots)
        status = {"loss": f"{history.train_loss[-1]:.4g}"}
        if validate is not None:
            model.eval()
            with torch.no_grad():
                history.val_loss.append(float(validate(model)))
            status["val"] = f"{history.val_loss[-1]:.4g}"
            if history.val_loss[-1] < best_loss:
                best_loss, history.best_epoch = history.val_loss[-1], epoch
                best_state = copy.deepcopy(model.state_dict())
        bar.set_postfix(status)
        if patience is not None and history.best_epoch >= 0 and epoch - history.best_epoch >= patience:
            history.stopped_early = True
            break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    history.seconds = time.perf_counter() - start
    model.eval()
    if checkpoint is not None:
        save_checkpoint(checkpoint, model, settings, history=asdict(history))
    return history


def cached_history(model, checkpoint, settings, retrain: bool, history_class):
    """When `checkpoint` holds this model trained with `settings`, load it and return its history; else None."""
    if checkpoint is None or retrain or not Path(checkpoint).exists():
        return None
    payload = load_checkpoint(checkpoint, type(model).__name__, getattr(model, "config", {}), settings)
    restore(model, payload, checkpoint).eval()  # as a finished training run leaves it: no batch-norm updates after
    return history_class(**{**payload["extra"]["history"], "from_checkpoint": True})


def take_snapshot(snapshot, epoch: int, model, snapshots: dict) -> None:
    """Run snapshot(epoch, model) in eval mode without gradients; keep what it returns, if anything."""
    if snapshot is None:
        return
    model.eval()
    with torch.no_grad():
        taken = snapshot(epoch, model)
    if taken is not None:
        snapshots[epoch] = taken


def stop_if_diverged(losses: torch.Tensor, epoch: int, steps: int) -> None:
    """Raise TrainingDiverged at the first non-finite loss of the epoch, naming its global step."""
    bad = (~torch.isfinite(losses)).nonzero()
    if len(bad):
        step = int(bad[0])
        raise TrainingDiverged(
            f"The loss became {losses[step].item()} at step {epoch * steps + step} (epoch {epoch}, batch {step}). "
            "Lower the learning rate, check the inputs for NaN, or clamp the log-probabilities; "
            "no checkpoint was written.")
