"""`make bench`, part 1 (python -m instructor.bench.throughput): training throughput of the notebooks' models against
the device's own matmul rate.

Each configuration trains the model of a notebook with the loop the notebooks write (the minibatch, the loss,
backward, the step). FLOPs counted are those of the linear and convolution layers' matrix products (2 per
multiply-add forward, 4 backward), so the achieved rate is a lower bound on what the step computes.
"""
import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from helpers import VAE, ConvGenerator, Discriminator, dynamic_binarize, load_mnist, runtime


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(device, n: int = 2048, seconds: float = 1.0) -> float:
    """FLOP/s of an n x n float32 matrix product on `device`."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    synchronize(device)
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        reps += 1
    synchronize(device)
    return 2 * n**3 * reps / (time.perf_counter() - start)


def step_flops(model: nn.Module, batch: int) -> int:
    """Matmul FLOPs of one training step of the linear layers: forward 2, backward 4 per multiply-add."""
    return 6 * batch * sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear))


def negative_elbo(model: VAE, x: torch.Tensor) -> torch.Tensor:
    """The notebooks' training loss, written out for timing: one reparameterised sample, the KL in closed form."""
    mu, logvar = model.encode(x)
    z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
    reconstruction = -F.binary_cross_entropy_with_logits(model.decoder(z), x, reduction="none").sum(-1)
    kl = 0.5 * (logvar.exp() + mu**2 - logvar - 1).sum(-1)
    return (kl - reconstruction).mean()


def vae_epochs(model, optimizer, x, batch: int, epochs: int) -> float:
    """Seconds for `epochs` passes of the VAE loop: a fresh binarisation each epoch, then the steps."""
    synchronize(x.device)
    start = time.perf_counter()
    for _ in range(epochs):
        binary = dynamic_binarize(x)
        for index in torch.randperm(len(x), device=x.device).split(batch):
            loss = negative_elbo(model, binary[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    synchronize(x.device)
    return time.perf_counter() - start


CONFIGS = {  # name: (model, batch size)
    "model B (2-D, fixed variance)": (lambda: VAE(2, fixed_std=0.1), 256),
    "2-D VAE (512-512-256)": (lambda: VAE(2, hidden=(512, 512, 256), decoder_dropout=0.1), 256),
    "20-D VAE (512-256)": (lambda: VAE(20, decoder_dropout=0.1), 256),
    "reference 784-400-20 (ReLU)": (lambda: VAE(20, hidden=(400,), activation="relu"), 128),
}


def measure_vae(make_model, batch, x, epochs, device, repeats: int = 3):
    """(samples/s, matmul FLOP/s), the best of `repeats` timed runs after a warm-up epoch."""
    torch.manual_seed(0)
    model = make_model().to(device)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    vae_epochs(model, optimizer, x, batch, 1)
    # the best of several runs: on a shared machine the slower runs measure the neighbours, not the code
    seconds = min(vae_epochs(model, optimizer, x, batch, epochs) for _ in range(repeats))
    return epochs * len(x) / seconds, epochs * step_flops(model, len(x)) / seconds


def measure_gan(x, epochs: int, device, batch: int = 64):
    """(samples/s, linear-layer FLOP/s) of the GAN's alternating updates with the notebook's players."""
    torch.manual_seed(0)
    generator, discriminator = ConvGenerator().to(device), Discriminator().to(device)
    opt_g = torch.optim.Adam(generator.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), 2e-4, betas=(0.5, 0.999))
    real = 2 * x - 1

    def passes(n):
        for _ in range(n):
            for index in torch.randperm(len(real), device=device).split(batch):
                fake = generator(torch.randn(len(index), 64, device=device))
                logits_real, logits_fake = discriminator(real[index]), discriminator(fake.detach())
                loss_d = F.binary_cross_entropy_with_logits(logits_real, torch.ones_like(logits_real)) + \
                    F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake))
                opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                opt_d.step()
                logits = discriminator(fake)
                loss_g = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()

    def timed(n):
        synchronize(device)
        start = time.perf_counter()
        passes(n)
        synchronize(device)
        return time.perf_counter() - start

    passes(1)
    seconds = min(timed(epochs) for _ in range(3))
    return epochs * len(x) / seconds, epochs * len(x) * 3 * step_flops(discriminator, 1) / seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=3, help="timed passes over the training digits per config")
    args = parser.parse_args(argv)
    device = runtime.device()
    runtime.seed_everything(0)
    x = load_mnist(device=device).train_x
    peak = matmul_rate(device)
    print(f"\nmatmul rate (2048 x 2048, float32): {peak / 1e9:.1f} GFLOP/s on {device.type}, "
          f"{torch.get_num_threads()} CPU threads\n")
    print(f"{'configuration':<32} {'batch':>5} {'samples/s':>10} {'GFLOP/s':>8} {'of matmul':>9}")
    for name, (make_model, batch) in CONFIGS.items():
        rate, flops = measure_vae(make_model, batch, x, args.epochs, device)
        print(f"{name:<32} {batch:>5} {rate:>10.0f} {flops / 1e9:>8.1f} {flops / peak:>9.0%}")
    rate, flops = measure_gan(x, args.epochs, device)
    print(f"{'GAN (D linear layers only)':<32} {64:>5} {rate:>10.0f} {flops / 1e9:>8.1f} {flops / peak:>9.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
