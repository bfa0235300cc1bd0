"""GAN recipes for the 4,000 embedded digits, trained with helpers.fit_gan, unchanged.

A recipe picks the players (the notebook's former MLP Generator/Discriminator, or the DCGAN TransposedConvGenerator/
ConvDiscriminator of bench/experiments/models.py), the update step (the notebook's gan_step as it was before it
translated D's inputs, or the same with one-sided label smoothing: D's target for real images 0.9 instead of 1)
and the optimizer; 90 epochs of batch 64 in every recipe, snapshots at epochs 10, 30, 50, 90.
"""
import copy
import functools
import time

import torch
import torch.nn.functional as F

from answers.gan_mnist import translate
from bench.experiments.models import ConvDiscriminator, TransposedConvGenerator
from helpers import fit_gan
from helpers.measures import sample_quality
from helpers.models import Discriminator, Generator

from .common import salt_and_pepper

EPOCHS, SNAPSHOTS, BATCH, QUALITY_SAMPLES = 90, (10, 30, 50, 90), 64, 1000


def smoothed_gan_step(generator, discriminator, opt_g, opt_d, real, real_target: float = 0.9, augment: bool = False):
    """The former gan_step with D's target for real images `real_target` (one-sided label smoothing below 1) and,
    with `augment`, D reading translated real and generated images in both updates (DiffAugment)."""
    seen = translate if augment else (lambda images: images)
    z = torch.randn(len(real), generator.latent_dim, device=real.device)
    fake = generator(z)
    logits_real, logits_fake = discriminator(seen(real)), discriminator(seen(fake.detach()))
    loss_d = (F.binary_cross_entropy_with_logits(logits_real, torch.full_like(logits_real, real_target))
              + F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake)))
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    logits = discriminator(seen(fake))
    loss_g = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    return torch.stack([loss_d.detach(), loss_g.detach(), torch.sigmoid(logits_real).mean().detach(),
                        torch.sigmoid(logits_fake).mean().detach()])


MLP_G, MLP_D = (Generator, {}), (Discriminator, {})
CONV_G = {w: (TransposedConvGenerator, {"channels": w}) for w in ((32, 16), (64, 32), (128, 64))}
CONV_D = {w: (ConvDiscriminator, {"channels": w}) for w in ((16, 32), (32, 64), (64, 128))}

# name: generator, discriminator, smoothing (D's real target), relative CPU cost per epoch (local timings, noisy)
RECIPES = {
    "mlp": (MLP_G, MLP_D, 1.0, 1.0),
    "mlp+ls": (MLP_G, MLP_D, 0.9, 1.0),
    "convG64/32+mlpD": (CONV_G[(64, 32)], MLP_D, 1.0, 1.0),
    "convG64/32+mlpD+ls": (CONV_G[(64, 32)], MLP_D, 0.9, 1.0),
    "dcgan-xs+ls": (CONV_G[(32, 16)], CONV_D[(16, 32)], 0.9, 1.7),
    "dcgan-s": (CONV_G[(64, 32)], CONV_D[(32, 64)], 1.0, 2.5),
    "dcgan-s+ls": (CONV_G[(64, 32)], CONV_D[(32, 64)], 0.9, 2.5),
    "dcgan-s+ls+D-nodrop": (CONV_G[(64, 32)], (ConvDiscriminator, {"channels": (32, 64), "dropout": 0.0}), 0.9, 2.5),
    "dcgan-m+ls": (CONV_G[(128, 64)], CONV_D[(64, 128)], 0.9, 4.5),
}


# call 2: exponential moving averages (EMA) of the generator's weights, learning-rate decay, batch norm in D.
# options: ema = decays of the EMA copies evaluated beside the raw generator; lr_decay = constant for the first
# half of the steps, then linear to 0 (both players)
BN_D = (ConvDiscriminator, {"channels": (32, 64), "batch_norm": True})
RECIPES.update({
    "mlp+ls+ema": (MLP_G, MLP_D, 0.9, 1.0, dict(ema=(0.99, 0.999))),
    "convG64/32+mlpD+ema": (CONV_G[(64, 32)], MLP_D, 1.0, 1.0, dict(ema=(0.99, 0.999))),
    "dcgan-s+ema": (CONV_G[(64, 32)], CONV_D[(32, 64)], 1.0, 2.5, dict(ema=(0.99, 0.999))),
    "dcgan-s+ls+ema": (CONV_G[(64, 32)], CONV_D[(32, 64)], 0.9, 2.5, dict(ema=(0.99, 0.999))),
    "dcgan-s+bnD+ls+ema": (CONV_G[(64, 32)], BN_D, 0.9, 2.6, dict(ema=(0.99, 0.999))),
    "dcgan-s+ema+decay": (CONV_G[(64, 32)], CONV_D[(32, 64)], 1.0, 2.5, dict(ema=(0.99, 0.999), lr_decay=True)),
    "mlp+ls+ema+decay": (MLP_G, MLP_D, 0.9, 1.0, dict(ema=(0.99, 0.999), lr_decay=True)),
    "dcgan-m+ls+ema": (CONV_G[(128, 64)], CONV_D[(64, 128)], 0.9, 4.5, dict(ema=(0.99, 0.999))),
})


RECIPES.update({  # call 3: differentiable augmentation (translation by up to 2 pixels) for the small data set
    "mlp+ls+ema+aug": (MLP_G, MLP_D, 0.9, 1.0, dict(ema=(0.99, 0.999), augment=True)),
    "convG64/32+mlpD+ema+aug": (CONV_G[(64, 32)], MLP_D, 1.0, 1.0, dict(ema=(0.99, 0.999), augment=True)),
    "dcgan-s+ema+aug": (CONV_G[(64, 32)], CONV_D[(32, 64)], 1.0, 2.5, dict(ema=(0.99, 0.999), augment=True)),
})


class Step:
    """A recipe's update step for fit_gan: the former gan_step (or its label-smoothed version), after setting the lr
    when it decays, then an update of the EMA copies of the generator (weights averaged, buffers copied)."""

    def __init__(self, real_target: float, decays=(), total_steps: int | None = None, lr: float = 2e-4,
                 augment: bool = False):
        self.real_target, self.decays, self.total_steps, self.lr = real_target, decays, total_steps, lr
        self.augment = augment
        self.steps, self.emas = 0, {}
        self.__name__ = f"step(real_target={real_target}, ema={list(decays)}, lr_decay={bool(total_steps)})"

    def __call__(self, generator, discriminator, opt_g, opt_d, real):
        if not self.emas and self.decays:
            self.emas = {d: copy.deepcopy(generator).eval() for d in self.decays}
        if self.total_steps:
            scale = min(1.0, 2 * (1 - self.steps / self.total_steps))
            for opt in (opt_g, opt_d):
                for group in opt.param_groups:
                    group["lr"] = self.lr * scale
        # with real_target 1.0 and no augmentation: the notebook's gan_step before it translated D's inputs
        stats = smoothed_gan_step(generator, discriminator, opt_g, opt_d, real, self.real_target, self.augment)
        self.steps += 1
        with torch.no_grad():
            parameters = list(generator.parameters())
            for decay, ema in self.emas.items():
                torch._foreach_lerp_(list(ema.parameters()), parameters, 1 - decay)
                for mine, theirs in zip(ema.buffers(), generator.buffers()):
                    mine.copy_(theirs)
        return stats


def run(name: str, seed: int, data, classifier, val_features, fixed_z, epochs: int = EPOCHS,
        snapshots: tuple = SNAPSHOTS) -> tuple:
    """Train recipe `name` from `seed`; returns ({variant: generator}, {variant: epoch-90 fixed_z grid}, result)."""
    (g_class, g_config), (d_class, d_config), smoothing, cost, *rest = RECIPES[name]
    options = rest[0] if rest else {}
    steps_per_epoch = -(-len(data.train_x) // BATCH)
    step = Step(smoothing, options.get("ema", ()), epochs * steps_per_epoch if options.get("lr_decay") else None,
                augment=options.get("augment", False))

    def variants(generator):
        return {"raw": generator, **{f"ema{d}": ema for d, ema in step.emas.items()}}

    def snapshot(epoch, generator):
        if epoch not in snapshots:
            return None
        taken = {}
        for variant, model in variants(generator).items():
            fresh = model.sample(QUALITY_SAMPLES, rng=torch.Generator().manual_seed(epoch))
            quality = sample_quality(classifier, fresh, val_features)
            taken[variant] = {"val_frechet": quality["frechet"], "class_histogram": quality["class_histogram"],
                              "mean_confidence": quality["mean_confidence"], **salt_and_pepper(fresh)}
            if epoch == snapshots[-1]:
                taken[variant]["fixed"] = model.pixels(fixed_z).cpu()
        return taken

    start = time.perf_counter()
    generator, history = fit_gan(lambda: g_class(**g_config), lambda: d_class(**d_config), step,
                                 2 * data.train_x - 1,
                                 optimizer=functools.partial(torch.optim.Adam, lr=2e-4, betas=(0.5, 0.999)),
                                 epochs=epochs, batch_size=BATCH, seed=seed, snapshot=snapshot, desc=f"GAN {name}")
    seconds = time.perf_counter() - start
    results, grids = {}, {}
    for variant in history.snapshots[snapshots[-1]]:
        final = history.snapshots[snapshots[-1]][variant]
        grids[variant] = final.pop("fixed")
        results[variant] = {
            "val_frechet_by_epoch": {e: s[variant]["val_frechet"] for e, s in history.snapshots.items()},
            **{k: final[k] for k in ("class_histogram", "mean_confidence", "isolated_per_image", "impulse_per_image")}}
    result = {"kind": "gan", "recipe": name, "seed": seed, "cpu_cost_per_epoch": cost, "options": options,
              "generator": {"model": g_class.__name__, **generator.config},
              "discriminator": {"model": d_class.__name__, **d_config}, "real_target": smoothing,
              **results["raw"], "variants": results, "d_real_last": history.d_real[-1],
              "d_fake_last": history.d_fake[-1], "seconds": seconds}
    return variants(generator), grids, result
