"""Issue 15, session 2: 2-D VAE recipes trained on the local CPU through helpers.fit (with its `schedule`).

Every recipe: Adam, cosine decay over 400 epochs from lr to 1e-5 (stepped per epoch), batch 256, dynamic
binarisation, validation ELBO (10 samples) once per epoch, best validation epoch kept; scored on the
validation split only (100 samples per digit, torch.manual_seed(0)). One process per recipe and seed:

    python -m bench.experiments.vae_cpu RECIPE SEED [LATENT]      # appends a JSON line to vae_cpu_results.jsonl
"""
import functools
import json
import sys
import time
from pathlib import Path

import torch

from answers.vae import elbo, vae_loss
from bench.experiments.models import ConvVAE
from helpers import VAE, dynamic_binarize, evaluation_sets, fit, load_mnist

RESULTS = Path(__file__).resolve().parent / "vae_cpu_results.jsonl"

RECIPES = {  # name: (model factory of latent_dim, peak lr, exponential moving average of the weights per step)
    "mlp+decdrop0.1": (lambda d: VAE(d, decoder_dropout=0.1), 2e-3, None),
    "mlp": (lambda d: VAE(d), 2e-3, None),
    "mlp+decdrop0.2": (lambda d: VAE(d, decoder_dropout=0.2), 2e-3, None),
    "mlp1024/512+decdrop0.1": (lambda d: VAE(d, hidden=(1024, 512), decoder_dropout=0.1), 2e-3, None),
    "mlp512/512/256+decdrop0.1": (lambda d: VAE(d, hidden=(512, 512, 256), decoder_dropout=0.1), 2e-3, None),
    "mlp+decdrop0.1+ema0.999": (lambda d: VAE(d, decoder_dropout=0.1), 2e-3, 0.999),
    "mlp1024+decdrop0.2": (lambda d: VAE(d, hidden=(1024, 512), decoder_dropout=0.2), 2e-3, None),
    "conv16/32": (lambda d: ConvVAE(d, channels=(16, 32)), 2e-3, None),
    "conv16/32+lr1e-3": (lambda d: ConvVAE(d, channels=(16, 32)), 1e-3, None),
}


def main(name: str, seed: int, latent_dim: int = 2, epochs: int = 400) -> None:
    torch.set_num_threads(1)
    make, lr, ema_decay = RECIPES[name]
    mnist = load_mnist(device="cpu", announce=False)
    validation_x, _ = evaluation_sets(mnist)  # the test split is not read here
    averaged = {}

    def optimizer(parameters):  # Adam, and with ema_decay an average of the weights updated after every step
        opt = torch.optim.Adam(parameters, lr=lr)
        if ema_decay:
            model = averaged["model"]
            averaged["ema"] = torch.optim.swa_utils.AveragedModel(
                model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(ema_decay))
            opt.register_step_post_hook(lambda *_: averaged["ema"].update_parameters(model))
        return opt

    def make_model():
        averaged["model"] = make(latent_dim)
        return averaged["model"]

    def validate(model):
        scored = averaged["ema"].module if ema_decay else model
        scored.eval()
        value = -elbo(scored, validation_x, samples=10).mean().item()
        if ema_decay and value < averaged.get("best", float("inf")):
            averaged["best"], averaged["state"] = value, {k: v.clone() for k, v in scored.state_dict().items()}
        return value

    start = time.perf_counter()
    model, history = fit(make_model, vae_loss, mnist.train_x, seed=seed, epochs=epochs, batch_size=256,
                         optimizer=optimizer, validate=validate, resample=dynamic_binarize, desc=f"{name} s{seed}",
                         schedule=functools.partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=epochs,
                                                    eta_min=1e-5))
    if ema_decay:
        model.load_state_dict(averaged["state"])
    model.eval()
    with torch.no_grad():
        torch.manual_seed(0)
        val100 = elbo(model, validation_x, samples=100).mean().item()
    result = {"recipe": name, "seed": seed, "latent_dim": latent_dim, "epochs": epochs,
              "best_epoch": history.best_epoch + 1, "val_elbo_10_best": -min(history.val_loss), "val_elbo_100": val100,
              "train_elbo_at_best": -history.train_loss[history.best_epoch], "seconds": time.perf_counter() - start}
    print(json.dumps(result))
    with RESULTS.open("a") as f:
        f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), *(int(a) for a in sys.argv[3:]))
