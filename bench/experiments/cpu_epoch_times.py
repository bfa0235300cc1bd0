"""Seconds per training epoch on this machine's CPU of the baseline and the chosen recipes (same process, same load):
wall-clock seconds, and CPU seconds of this process (all its threads), which depend less on other processes' load.

    python -m bench.experiments.cpu_epoch_times [--epochs 2]
"""
import argparse
import functools
import json
import time

import torch

from helpers import evaluation_sets, fit_gan

from . import gan_sweep, vae_sweep
from .common import load_split


def vae_epoch(name: str, latent_dim: int, data, validation_x, epochs: int) -> float:
    recipe = {**vae_sweep.recipe(name), "epochs": epochs}
    vae_sweep.RECIPES[f"{name} (timing)"] = recipe
    start, cpu = time.perf_counter(), time.process_time()
    vae_sweep.train(recipe, latent_dim, 0, data, validation_x)
    return (time.perf_counter() - start) / epochs, (time.process_time() - cpu) / epochs


def gan_epoch(name: str, data, epochs: int) -> float:
    (g_class, g_config), (d_class, d_config), smoothing, _, *rest = gan_sweep.RECIPES[name]
    options = rest[0] if rest else {}
    step = gan_sweep.Step(smoothing, options.get("ema", ()), augment=options.get("augment", False))
    start, cpu = time.perf_counter(), time.process_time()
    fit_gan(lambda: g_class(**g_config), lambda: d_class(**d_config), step, 2 * data.train_x - 1,
            optimizer=functools.partial(torch.optim.Adam, lr=2e-4, betas=(0.5, 0.999)), epochs=epochs,
            batch_size=gan_sweep.BATCH)
    return (time.perf_counter() - start) / epochs, (time.process_time() - cpu) / epochs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--skip-vae", action="store_true")
    args = parser.parse_args()
    data = load_split("cpu")
    validation_x = evaluation_sets(data)[0]
    times = {}
    for name, latent in [] if args.skip_vae else (("base", 2), ("cos400+lr2e-3+encwd0.01", 2), ("base", 20),
                                                  ("cos400+lr2e-3+decdrop0.1", 20)):
        times[f"vae {latent}-D {name}"] = vae_epoch(name, latent, data, validation_x, args.epochs)
        print(f"vae {latent}-D {name}: wall, CPU s/epoch {times[f'vae {latent}-D {name}']}", flush=True)
    for name in ("mlp", "convG64/32+mlpD+ema+aug"):
        times[f"gan {name}"] = gan_epoch(name, data, args.epochs)
        print(f"gan {name}: wall, CPU s/epoch {times[f'gan {name}']}", flush=True)
    print(json.dumps(times))


if __name__ == "__main__":
    main()
