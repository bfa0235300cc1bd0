"""Variational autoencoders for 28x28 digits: Gaussian encoder q(z|x), standard normal prior, MLP decoder."""
import math

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import register_model
from .data import dynamic_binarize, evaluation_sets
from .objectives import kl_to_standard_normal, log_mean_exp, negative_elbo
from .training import fit

PIXELS = 784
ACTIVATIONS = {"elu": nn.ELU, "relu": nn.ReLU}


def mlp(sizes: list, activation: str = "elu") -> nn.Sequential:
    """Linear layers of the given widths with an activation between them (none after the last)."""
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


@register_model
class VAE(nn.Module):
    """p(z) = N(0, I); p(x|z) = Bernoulli(f(z)) over 784 pixels, or N(f(z), I/precision) with likelihood='gaussian';
    q(z|x) = N(mu(x), diag sigma^2(x)), or N(mu(x), fixed_std^2 I) when fixed_std is set (the encoder then
    outputs only the mean). Encoder and decoder are MLPs with the given hidden widths."""

    def __init__(self, latent_dim: int = 2, hidden: tuple = (512, 256), fixed_std: float | None = None,
                 likelihood: str = "bernoulli", precision: float = 1.0, activation: str = "elu"):
        super().__init__()
        if likelihood not in ("bernoulli", "gaussian") or activation not in ACTIVATIONS:
            raise ValueError(f"likelihood={likelihood!r}, activation={activation!r}: use 'bernoulli' or 'gaussian', "
                             f"and one of {sorted(ACTIVATIONS)}.")
        self.config = {"latent_dim": latent_dim, "hidden": list(hidden), "fixed_std": fixed_std,
                       "likelihood": likelihood, "precision": precision, "activation": activation}
        self.latent_dim, self.fixed_std, self.likelihood, self.precision = latent_dim, fixed_std, likelihood, precision
        self.encoder = mlp([PIXELS, *hidden, latent_dim if fixed_std else 2 * latent_dim], activation)
        self.decoder = mlp([latent_dim, *reversed(hidden), PIXELS], activation)

    def encode(self, x):
        """The mean and log-variance of q(z|x)."""
        out = self.encoder(x)
        if self.fixed_std is not None:
            return out, torch.full_like(out, 2 * math.log(self.fixed_std))
        return out.chunk(2, dim=-1)

    def decode(self, z):
        """f(z): Bernoulli means (or Gaussian means), pixel by pixel, in [0, 1]."""
        return torch.sigmoid(self.decoder(z))

    def log_px_given_z(self, x, z):
        """log p(x|z) summed over pixels; x broadcasts against the leading sample dimensions of z."""
        logits = self.decoder(z)
        if self.likelihood == "bernoulli":
            # sum_j x_j log f_j + (1 - x_j) log(1 - f_j), computed from logits without overflow
            return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
        squared = (x - torch.sigmoid(logits)).square().sum(-1)
        return 0.5 * PIXELS * math.log(self.precision / (2 * math.pi)) - 0.5 * self.precision * squared

    @staticmethod
    def reparameterize(mu, logvar, samples: int | None = None):
        """z = mu + sigma * eps with eps ~ N(0, I): a sample of q whose gradient reaches mu and sigma."""
        shape = mu.shape if samples is None else (samples, *mu.shape)
        return mu + (0.5 * logvar).exp() * torch.randn(shape, device=mu.device, dtype=mu.dtype)

    def elbo_terms(self, x, samples: int = 1):
        """Per-example reconstruction E_q log p(x|z) (Monte Carlo) and KL(q(z|x) || p(z)) (closed form)."""
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar, samples)
        return self.log_px_given_z(x, z).mean(0), kl_to_standard_normal(mu, logvar)

    def elbo(self, x, samples: int = 1):
        """The ELBO of each example in nats: E_q[log p(x|z)] - KL(q(z|x) || p(z))."""
        reconstruction, kl = self.elbo_terms(x, samples)
        return reconstruction - kl

    def loss(self, x):
        """The training loss: the minibatch mean of -ELBO, one reparameterised sample per example."""
        reconstruction, kl = self.elbo_terms(x)
        return negative_elbo(reconstruction, kl)

    @torch.no_grad()
    def log_likelihood(self, x, k: int = 1000, chunk: int = 100):
        """Importance-sampled log p(x) = log mean_k p(x, z_k) / q(z_k|x), z_k ~ q(z|x); per example."""
        mu, logvar = self.encode(x)
        std = (0.5 * logvar).exp()
        log_weights = []
        for size in [chunk] * (k // chunk) + ([k % chunk] if k % chunk else []):
            eps = torch.randn((size, *mu.shape), device=mu.device, dtype=mu.dtype)
            z = mu + std * eps
            log_prior = -0.5 * (z.square() + math.log(2 * math.pi)).sum(-1)
            log_q = -0.5 * (eps.square() + logvar + math.log(2 * math.pi)).sum(-1)
            log_weights.append(self.log_px_given_z(x, z) + log_prior - log_q)
        return log_mean_exp(torch.cat(log_weights), dim=0)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None):
        """n images from the model: decoder means f(z) for z ~ N(0, I) (drawn on the CPU: the same on any device)."""
        z = torch.randn(n, self.latent_dim, generator=generator)
        return self.decode(z.to(next(self.parameters()).device))


def train_vae(model: VAE, data, *, epochs: int, patience: int | None, batch_size: int = 256, lr: float = 1e-3,
              grey: bool = False, snapshot=None, checkpoint=None, retrain: bool = False, desc: str = "VAE"):
    """Adam on the minibatch -ELBO over data.train_x, dynamically binarised (or grey with grey=True), with early
    stopping on the validation ELBO (of the fixed binarisation for a Bernoulli decoder); cached in `checkpoint`."""
    validation = evaluation_sets(data)[0] if model.likelihood == "bernoulli" else data.val_x
    settings = {"epochs": epochs, "patience": patience, "batch_size": batch_size, "lr": lr, "grey": grey,
                "data": data.source, "train_size": len(data.train_x)}
    return fit(model, lambda m, x: m.loss(x), data.train_x, torch.optim.Adam(model.parameters(), lr=lr),
               epochs=epochs, batch_size=batch_size, patience=patience,
               validate=lambda m: -m.elbo(validation, samples=10).mean().item(),
               resample=None if grey else dynamic_binarize, snapshot=snapshot,
               checkpoint=checkpoint, settings=settings, retrain=retrain, desc=desc)
