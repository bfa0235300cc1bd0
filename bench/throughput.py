"""`make bench` (python -m bench.throughput): training throughput against the device's own matmul rate, in one run.

FLOPs counted are those of the linear layers (2 per multiply-add forward, 4 backward), so the achieved
rate is a lower bound on what the step computes.
"""
import argparse
import time

import torch
from torch import nn

from answers.gan_mnist import gan_step
from answers.vae import elbo_terms, vae_loss
from helpers import VAE, Discriminator, Generator, dynamic_binarize, fit, load_mnist, runtime


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
    """Matmul FLOPs of one training step: forward 2, backward 4 per multiply-add of every linear layer."""
    return 6 * batch * sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear))


def bare_loop(model, optimizer, x, batch: int, epochs: int) -> float:
    """Seconds for `epochs` passes of the plain step (no progress bar, history or checks)."""
    synchronize(x.device)
    start = time.perf_counter()
    for _ in range(epochs):
        xb = dynamic_binarize(x)
        for index in torch.randperm(len(x), device=x.device).split(batch):
            loss = vae_loss(model, xb[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    synchronize(x.device)
    return time.perf_counter() - start


def fit_loop(model, optimizer, x, batch: int, epochs: int) -> float:
    """Seconds for the same passes through helpers.fit, as the notebooks train."""
    synchronize(x.device)
    start = time.perf_counter()
    # fit builds its model from a factory: hand it the one being timed, and its optimizer
    fit(lambda: model, vae_loss, x, optimizer=lambda parameters: optimizer, epochs=epochs, batch_size=batch,
        resample=dynamic_binarize, desc="fit")
    synchronize(x.device)
    return time.perf_counter() - start


def reference_loop(model, optimizer, x, batch: int, epochs: int) -> float:
    """Seconds for the loop of pytorch/examples vae/main.py: a DataLoader over a TensorDataset, summed loss."""
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=batch, shuffle=True)
    synchronize(x.device)
    start = time.perf_counter()
    for _ in range(epochs):
        for (xb,) in loader:
            reconstruction, kl = elbo_terms(model, xb)
            loss = (kl - reconstruction).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    synchronize(x.device)
    return time.perf_counter() - start


CONFIGS = {  # name: (model, batch size, loop)
    "vae_fixed_var": (lambda: VAE(2, fixed_std=0.1), 256, bare_loop),
    "vae_2d": (lambda: VAE(2), 256, bare_loop),
    "vae_20d": (lambda: VAE(20), 256, bare_loop),
    "reference 784-400-20, examples loop": (lambda: VAE(20, hidden=(400,), activation="relu"), 128, reference_loop),
}


def measure(make_model, batch, loop, x, epochs, device, repeats: int = 3):
    """(samples/s, matmul FLOP/s) of `loop`, the best of `repeats` timed runs after a warm-up epoch."""
    torch.manual_seed(0)
    model = make_model().to(device)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    loop(model, optimizer, x, batch, 1)
    # the best of several runs: on a shared machine the slower runs measure the neighbours, not the code
    seconds = min(loop(model, optimizer, x, batch, epochs) for _ in range(repeats))
    flops_per_epoch = step_flops(model, len(x))  # linear in the batch size, so the partial last batch counts right
    return epochs * len(x) / seconds, epochs * flops_per_epoch / seconds


def measure_gan(x, epochs: int, device, batch: int = 64):
    """(samples/s, matmul FLOP/s) of GAN training: per real sample, the generator runs forward and backward once,
    the discriminator forward on real and fake and backward for both of its losses."""
    torch.manual_seed(0)
    generator, discriminator = Generator().to(device), Discriminator().to(device)
    opt_g = torch.optim.Adam(generator.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), 2e-4, betas=(0.5, 0.999))
    real = 2 * x - 1  # pixels to tanh's range

    def passes(n):
        for _ in range(n):
            for index in torch.randperm(len(real), device=device).split(batch):
                gan_step(generator, discriminator, opt_g, opt_d, real[index])

    def timed(n):
        synchronize(device)
        start = time.perf_counter()
        passes(n)
        synchronize(device)
        return time.perf_counter() - start

    passes(1)
    seconds = min(timed(epochs) for _ in range(3))
    per_sample = step_flops(generator, 1) + 3 * step_flops(discriminator, 1)  # D: real, fake, and fake for G
    return epochs * len(x) / seconds, epochs * len(x) * per_sample / seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=5, help="timed passes over the training digits per config")
    args = parser.parse_args(argv)
    device = runtime.device()
    runtime.seed_everything(0)
    x = load_mnist(device=device).train_x
    peak = matmul_rate(device)
    print(f"\nmatmul rate (2048 x 2048, float32): {peak / 1e9:.1f} GFLOP/s on {device.type}, "
          f"{torch.get_num_threads()} CPU threads\n")
    print(f"{'configuration':<38} {'batch':>5} {'samples/s':>10} {'GFLOP/s':>8} {'of matmul':>9}")
    rows = {}
    for name, (make_model, batch, loop) in CONFIGS.items():
        rate, flops = measure(make_model, batch, loop, x, args.epochs, device)
        rows[name] = flops
        print(f"{name:<38} {batch:>5} {rate:>10.0f} {flops / 1e9:>8.1f} {flops / peak:>9.0%}")
    gan_rate, gan_flops = measure_gan(x, args.epochs, device)
    name = "GAN (MLP generator and discriminator)"
    print(f"{name:<38} {64:>5} {gan_rate:>10.0f} {gan_flops / 1e9:>8.1f} {gan_flops / peak:>9.0%}")
    print("\noverhead of helpers.fit (progress bar, history, NaN check) over the bare step loop,")
    print("median of 7 back-to-back pairs (neighbouring runs share the machine's momentary speed):")
    for name in ("vae_2d", "vae_20d"):
        make_model, batch, _ = CONFIGS[name]
        ratios = []
        for _ in range(7):
            bare = measure(make_model, batch, bare_loop, x, args.epochs, device, repeats=1)[0]
            fitted = measure(make_model, batch, fit_loop, x, args.epochs, device, repeats=1)[0]
            ratios.append(fitted / bare)
        spread = f"{1 - max(ratios):+.1%} to {1 - min(ratios):+.1%}"
        print(f"  {name}: overhead {1 - sorted(ratios)[3]:+.1%} (pairs ranged {spread})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
