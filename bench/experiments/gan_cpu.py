"""Issue 15, session 2: GAN generators tried on the local CPU with notebook 06's recipe (its gan_step with the random
translation, Adam 2e-4 / (0.5, 0.999), batch 64, 90 epochs, EMA 0.99 of the generator), scored on the validation
split only: Frechet distance of 1,000 samples (rng seed 90) in the committed classifier's features, class shares,
isolated pixels per image.

    python -m bench.experiments.gan_cpu VARIANT SEED        # appends a JSON line to gan_cpu_results.jsonl
"""
import functools
import json
import sys
import time
from pathlib import Path

import torch

from answers.gan_mnist import gan_step
from bench.experiments.models import TransposedConvGenerator
from helpers import ConvGenerator, Discriminator, checkpoints_dir, fit_gan, load_mnist
from helpers.measures import isolated_pixels, sample_quality, train_classifier

RESULTS = Path(__file__).resolve().parent / "gan_cpu_results.jsonl"


# convT: the GPU experiments' generator; upsample: helpers.ConvGenerator (nearest-neighbour upsampling, 3x3 convs)
VARIANTS = {"convT": TransposedConvGenerator, "upsample": ConvGenerator}


def main(variant: str, seed: int) -> None:
    torch.set_num_threads(1)
    mnist = load_mnist(device="cpu", announce=False)
    classifier = train_classifier(mnist, epochs=50, checkpoint=checkpoints_dir() / "digit_classifier.pt")
    with torch.no_grad():
        val_features = classifier.features(mnist.val_x)
    start = time.perf_counter()
    generator, history = fit_gan(VARIANTS[variant], Discriminator, functools.partial(gan_step, max_shift=2),
                                 2 * mnist.train_x - 1, seed=seed, ema_decay=0.99, epochs=90, batch_size=64,
                                 optimizer=functools.partial(torch.optim.Adam, lr=2e-4, betas=(0.5, 0.999)),
                                 desc=f"{variant} s{seed}")
    samples = generator.sample(1000, rng=torch.Generator().manual_seed(90))
    quality = sample_quality(classifier, samples, val_features)
    result = {"variant": variant, "seed": seed, "val_frechet_90": quality["frechet"],
              "class_share_min": min(quality["class_histogram"]), "class_share_max": max(quality["class_histogram"]),
              "isolated_per_image": isolated_pixels(samples), "seconds": time.perf_counter() - start}
    print(json.dumps(result))
    with RESULTS.open("a") as f:
        f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
