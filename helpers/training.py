"""The generic training loops: minibatches from device tensors, progress bar, NaN stop, early stopping, caching.

Both loops build their models from factories after seeding, so a re-run (after Ctrl-C, say) trains exactly
what a clean run trains, and both key their checkpoint on every input that changes the trained weights.
"""
import copy
import functools
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .checkpoints import load_checkpoint, restore, save_checkpoint
from .runtime import progress


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


@dataclass
class GANHistory:
    """Per-epoch means of the two losses and of D(x), D(G(z)); snapshots by epoch."""
    loss_d: list = field(default_factory=list)
    loss_g: list = field(default_factory=list)
    d_real: list = field(default_factory=list)
    d_fake: list = field(default_factory=list)
    snapshots: dict = field(default_factory=dict)
    seconds: float = 0.0
    from_checkpoint: bool = False


def minibatches(n: int, batch_size: int, device) -> list:
    """Index tensors for one shuffled pass over n items (the last batch may be smaller)."""
    return torch.randperm(n, device=device).split(batch_size)


def describe(factory) -> str:
    """A checkpoint key for a function or a factory: `partial(torch.optim.Adam, lr=1e-3)` -> 'Adam(lr=0.001)'."""
    if isinstance(factory, functools.partial):
        arguments = ", ".join([*map(repr, factory.args), *(f"{k}={v!r}" for k, v in sorted(factory.keywords.items()))])
        return f"{getattr(factory.func, '__name__', factory.func)}({arguments})"
    return getattr(factory, "__name__", None) or repr(factory)


def seeded(make_model, seed: int, device):
    """A fresh model from its factory, its initial weights fixed by `seed` alone."""
    torch.manual_seed(seed)
    return make_model().to(device)


def fit(make_model, loss_fn, data, *, optimizer, epochs: int, batch_size: int, seed: int = 0, schedule=None,
        validate=None, patience: int | None = None, resample=None, snapshot=None, checkpoint=None,
        settings: dict | None = None, retrain: bool = False, desc: str = "train"):
    """Train make_model() from seed `seed` by minimising loss_fn(model, *batch) over minibatches of `data`.

    `data` is a tensor or a tuple of tensors on the training device; `optimizer` a factory of parameters
    (`functools.partial(torch.optim.Adam, lr=1e-3)`); `schedule`, if given, a learning-rate scheduler factory of the
    optimizer, stepped after every epoch (`partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=epochs)`).
    validate(model) -> validation loss, once per epoch; with `patience`, stop after that many epochs without
    improvement; the best weights are kept. resample(x) -> x replaces the first tensor every epoch (dynamic
    binarisation). snapshot(epoch, model) runs after each epoch (1-based); what it returns, if not None, goes to
    history.snapshots. With `checkpoint`, a model saved under the same settings (these arguments plus `settings`,
    which must name whatever else changes the weights: data, loss, validation) is loaded instead.
    Returns (model, history).
    """
    data = data if isinstance(data, tuple) else (data,)
    device = data[0].device
    if len(data[0]) == 0:
        raise ValueError("fit() was given no training data (0 examples): check the split or the data source.")
    key = {"epochs": epochs, "batch_size": batch_size, "seed": seed, "optimizer": describe(optimizer),
           "patience": patience, **({"schedule": describe(schedule)} if schedule else {}), **(settings or {})}
    model = seeded(make_model, seed, device)
    cached = cached_history(model, checkpoint, key, retrain, History)
    if cached is not None:
        return model, cached

    opt = optimizer(model.parameters())
    scheduler = schedule(opt) if schedule else None
    history, best_loss, best_state = History(), float("inf"), None
    start = time.perf_counter()
    bar = progress(range(epochs), desc=desc, unit="epoch")
    for epoch in bar:
        model.train()
        epoch_data = (resample(data[0]), *data[1:]) if resample else data
        batches = minibatches(len(data[0]), batch_size, device)
        # losses stay on the device and are checked once an epoch: no per-step host sync
        losses = torch.empty(len(batches), device=device)
        for step, index in enumerate(batches):
            loss = loss_fn(model, *(t[index] for t in epoch_data))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses[step] = loss.detach()
        stop_if_diverged(losses, epoch, len(batches))
        if scheduler is not None:
            scheduler.step()
        history.train_loss.append(losses.mean().item())
        take_snapshot(snapshot, epoch + 1, model, history.snapshots)
        status = {"loss": f"{history.train_loss[-1]:.4g}"}
        if validate is not None:
            model.eval()
            with torch.no_grad():
                history.val_loss.append(float(validate(model)))
            stop_if_diverged(torch.tensor(history.val_loss[-1:]), epoch, 1, what="validation loss")
            status["val"] = f"{history.val_loss[-1]:.4g}"
            if history.val_loss[-1] < best_loss:
                best_loss, history.best_epoch = history.val_loss[-1], epoch
                best_state = copy.deepcopy(model.state_dict())
        bar.set_postfix(status, refresh=False)
        if patience is not None and history.best_epoch >= 0 and epoch - history.best_epoch >= patience:
            history.stopped_early = True
            break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    history.seconds = time.perf_counter() - start
    finish(model, checkpoint, key, history)
    return model, history


def fit_gan(make_generator, make_discriminator, step, images, *, optimizer, epochs: int, batch_size: int,
            seed: int = 0, ema_decay: float | None = None, snapshot=None, checkpoint=None, settings: dict | None = None,
            retrain: bool = False, desc: str = "GAN"):
    """Train a generator and a discriminator, seeded, by step(G, D, opt_g, opt_d, real) over minibatches of `images`.

    `step` returns the tensor [loss_d, loss_g, mean D(x), mean D(G(z))] of its minibatch; `images` are in the
    range the discriminator reads. With `ema_decay`, an exponential moving average of the generator's weights
    (and batch-norm statistics) is updated after every step; it is what snapshots see and what is returned and
    saved. The generator is saved to and loaded from `checkpoint`, keyed on these arguments, the discriminator's
    config, the step's name and `settings`. Returns (generator, history).
    """
    generator = seeded(make_generator, seed, images.device)
    discriminator = make_discriminator().to(images.device)  # its init follows the generator's in the seeded stream
    key = {"epochs": epochs, "batch_size": batch_size, "seed": seed, "optimizer": describe(optimizer),
           "discriminator": {"model": type(discriminator).__name__, **getattr(discriminator, "config", {})},
           "step": describe(step), **({"ema_decay": ema_decay} if ema_decay else {}),
           **(settings or {})}
    cached = cached_history(generator, checkpoint, key, retrain, GANHistory)
    if cached is not None:
        return generator, cached

    opt_g, opt_d = optimizer(generator.parameters()), optimizer(discriminator.parameters())
    # the averaged generator's weights trail the trained one's: fewer of the last steps' oscillations
    # (Yazici et al. 2019, The unusual effectiveness of averaging in GAN training)
    averaged = torch.optim.swa_utils.AveragedModel(
        generator, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(ema_decay), use_buffers=True
    ) if ema_decay else None
    shown = averaged.module if averaged is not None else generator
    history, start = GANHistory(), time.perf_counter()
    bar = progress(range(epochs), desc=desc, unit="epoch")
    for epoch in bar:
        generator.train(), discriminator.train()
        batches = minibatches(len(images), batch_size, images.device)
        stats = torch.empty(len(batches), 4, device=images.device)  # checked once an epoch: no per-step sync
        for i, index in enumerate(batches):
            stats[i] = step(generator, discriminator, opt_g, opt_d, images[index])
            if averaged is not None:
                averaged.update_parameters(generator)
        stop_if_diverged(stats[:, :2].sum(1), epoch, len(batches))
        means = stats.mean(0).tolist()
        for values, mean in zip((history.loss_d, history.loss_g, history.d_real, history.d_fake), means):
            values.append(mean)
        bar.set_postfix(D=f"{history.loss_d[-1]:.3f}", G=f"{history.loss_g[-1]:.3f}", refresh=False)
        take_snapshot(snapshot, epoch + 1, shown, history.snapshots)
    bar.close()
    if averaged is not None:
        generator.load_state_dict(averaged.module.state_dict())
    history.seconds = time.perf_counter() - start
    finish(generator, checkpoint, key, history)
    return generator, history


def cached_history(model, checkpoint, settings: dict, retrain: bool, history_class):
    """When `checkpoint` holds this model trained with `settings`, load it and return its history; else None."""
    if checkpoint is None or retrain or not Path(checkpoint).exists():
        return None
    payload = load_checkpoint(checkpoint, type(model).__name__, getattr(model, "config", {}), settings)
    restore(model, payload, checkpoint).eval()  # as a finished training run leaves it: no batch-norm updates after
    return history_class(**{**payload["extra"]["history"], "from_checkpoint": True})


def finish(model, checkpoint, settings: dict, history) -> None:
    """Leave a trained model in eval mode and save it, when asked, with its settings and history."""
    model.eval()
    if checkpoint is not None:
        save_checkpoint(checkpoint, model, settings, history=asdict(history))


def take_snapshot(snapshot, epoch: int, model, snapshots: dict) -> None:
    """Run snapshot(epoch, model) in eval mode without gradients; keep what it returns, if anything."""
    if snapshot is None:
        return
    model.eval()
    with torch.no_grad():
        taken = snapshot(epoch, model)
    if taken is not None:
        snapshots[epoch] = taken


def stop_if_diverged(losses: torch.Tensor, epoch: int, steps: int, what: str = "loss") -> None:
    """Raise TrainingDiverged at the first non-finite value of the epoch, naming its global step."""
    bad = (~torch.isfinite(losses)).nonzero()
    if len(bad):
        step = int(bad[0])
        raise TrainingDiverged(
            f"The {what} became {losses[step].item()} at step {epoch * steps + step} (epoch {epoch}, batch {step}). "
            "Lower the learning rate, check the inputs for NaN, or clamp the log-probabilities; "
            "no checkpoint was written.")
