"""Network architectures shared by the notebooks: one MLP builder, the VAE's networks, the GAN's players, a classifier.

Architectures only: what a model computes from its networks (ELBOs, losses, update steps) is answer code and
lives in the notebook of its question.
"""
import math

import torch
from torch import nn

from .checkpoints import register_model

PIXELS = 784  # 28 x 28 MNIST digits, flattened
ACTIVATIONS = {"elu": nn.ELU, "relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2)}


def mlp(sizes: list, activation: str = "elu", batch_norm: bool = False, dropout: float = 0.0) -> list:
    """The layers of an MLP with the given widths: Linear, then [BatchNorm], activation, [Dropout] between layers."""
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers += [nn.BatchNorm1d(n_out)] if batch_norm else []
            layers.append(ACTIVATIONS[activation]())
            layers += [nn.Dropout(dropout)] if dropout else []
    return layers


@register_model
class VAE(nn.Module):
    """The networks of a VAE over 784 pixels: an encoder x -> (mu, log sigma^2) of q(z|x) and a decoder z -> logits.

    With `fixed_std` the encoder outputs only the mean and q(z|x) = N(mu(x), fixed_std^2 I). `decoder_dropout` drops
    the decoder's hidden units while training (a regulariser for small training sets; off in eval mode). `likelihood`
    and `precision` name the decoder's distribution (Bernoulli, or N(f(z), I/precision)) for the code that scores it.
    """

    def __init__(self, latent_dim: int = 2, hidden: tuple = (512, 256), fixed_std: float | None = None,
                 likelihood: str = "bernoulli", precision: float = 1.0, activation: str = "elu",
                 decoder_dropout: float = 0.0):
        super().__init__()
        if likelihood not in ("bernoulli", "gaussian") or activation not in ACTIVATIONS:
            raise ValueError(f"likelihood={likelihood!r}, activation={activation!r}: use 'bernoulli' or 'gaussian', "
                             f"and one of {sorted(ACTIVATIONS)}.")
        self.config = {"latent_dim": latent_dim, "hidden": list(hidden), "fixed_std": fixed_std,
                       "likelihood": likelihood, "precision": precision, "activation": activation}
        if decoder_dropout:  # only when used, so that checkpoints saved before the option existed still match
            self.config["decoder_dropout"] = decoder_dropout
        self.latent_dim, self.fixed_std, self.likelihood, self.precision = latent_dim, fixed_std, likelihood, precision
        self.encoder = nn.Sequential(*mlp([PIXELS, *hidden, latent_dim if fixed_std else 2 * latent_dim], activation))
        self.decoder = nn.Sequential(*mlp([latent_dim, *reversed(hidden), PIXELS], activation, dropout=decoder_dropout))

    def encode(self, x):
        """The mean and log-variance of q(z|x)."""
        out = self.encoder(x)
        if self.fixed_std is not None:
            return out, torch.full_like(out, 2 * math.log(self.fixed_std))
        return out.chunk(2, dim=-1)

    def decode(self, z):
        """f(z): the decoder's pixel means in [0, 1] (Bernoulli probabilities, or Gaussian means)."""
        return torch.sigmoid(self.decoder(z))

    @torch.no_grad()
    def sample(self, n: int, rng: torch.Generator | None = None):
        """n images f(z), z ~ N(0, I), with z drawn on the CPU so that a seeded `rng` gives the same on any device."""
        z = torch.randn(n, self.latent_dim, generator=rng)
        return self.decode(z.to(next(self.parameters()).device))


@register_model
class Generator(nn.Module):
    """G(z): noise z ~ N(0, I) to an image with pixels in [-1, 1] (tanh), through an MLP with batch normalisation."""

    def __init__(self, latent_dim: int = 64, hidden: tuple = (256, 512)):
        super().__init__()
        self.config = {"latent_dim": latent_dim, "hidden": list(hidden)}
        self.latent_dim = latent_dim
        # batch normalisation after each hidden layer, as in DCGAN's generator (Radford, Metz and Chintala 2016)
        self.net = nn.Sequential(*mlp([latent_dim, *hidden, PIXELS], "leaky_relu", batch_norm=True), nn.Tanh())

    def forward(self, z):
        return self.net(z)

    def pixels(self, z):
        """G(z) mapped from tanh's [-1, 1] to pixel values in [0, 1], as the data and the plots use."""
        return (self(z) + 1) / 2

    @torch.no_grad()
    def sample(self, n: int, rng: torch.Generator | None = None):
        """n images (n, 784) in [0, 1], from noise drawn on the CPU (the same on any device), in eval mode."""
        was_training = self.training
        self.eval()  # batch statistics must not make one sample depend on the others
        images = self.pixels(torch.randn(n, self.latent_dim, generator=rng).to(next(self.parameters()).device))
        self.train(was_training)
        return images


@register_model
class ConvGenerator(Generator):
    """A DCGAN-style generator: z -> Linear -> (c1, 7, 7) -> [upsample x2, 3x3 conv] x2 -> 28 x 28, tanh; images come
    out flat (n, 784), and `pixels(z)` and `sample(n, rng)` are Generator's.

    Batch normalisation and ReLU after the two hidden layers, none on the output layer. Neighbouring pixels share
    the convolutions' filters (notebook 06's GAN with this generator leaves 0.26 isolated pixels per image, the MLP
    GAN 2.19, a comparison that also changed the discriminator's input and the averaging: docs/model-quality.md);
    nearest-neighbour upsampling followed by a convolution, rather than a stride-2 transposed convolution, avoids the
    uneven overlap of kernels that leaves a checkerboard pattern (Odena, Dumoulin and Olah 2016, *Deconvolution and
    checkerboard artifacts*).
    """

    def __init__(self, latent_dim: int = 64, channels: tuple = (64, 32)):
        nn.Module.__init__(self)
        c1, c2 = channels
        self.config = {"latent_dim": latent_dim, "channels": list(channels)}
        self.latent_dim = latent_dim
        self.net = nn.Sequential(
            nn.Linear(latent_dim, c1 * 7 * 7), nn.BatchNorm1d(c1 * 7 * 7), nn.ReLU(), nn.Unflatten(1, (c1, 7, 7)),
            *self.upsample(c1, c2), nn.BatchNorm2d(c2), nn.ReLU(),   # 14 x 14
            *self.upsample(c2, 1), nn.Tanh(), nn.Flatten())          # 28 x 28

    @staticmethod
    def upsample(c_in: int, c_out: int) -> list:
        """The layers that double the maps' size: nearest-neighbour upsampling, then a 3x3 convolution."""
        return [nn.Upsample(scale_factor=2), nn.Conv2d(c_in, c_out, 3, padding=1)]


@register_model
class Discriminator(nn.Module):
    """D(x): the logit of the probability that an image in [-1, 1] is real (MLP, LeakyReLU, dropout)."""

    def __init__(self, hidden: tuple = (512, 256), dropout: float = 0.3):
        super().__init__()
        self.config = {"hidden": list(hidden), "dropout": dropout}
        self.net = nn.Sequential(*mlp([PIXELS, *hidden, 1], "leaky_relu", dropout=dropout))

    def forward(self, x):
        return self.net(x).squeeze(-1)


@register_model
class DigitClassifier(nn.Module):
    """A small MLP classifier of digits in [0, 1]; its penultimate layer gives the features of the Frechet distance."""

    def __init__(self, hidden: tuple = (256, 128)):
        super().__init__()
        self.config = {"hidden": list(hidden)}
        self.features = nn.Sequential(*mlp([PIXELS, *hidden], "relu"), nn.ReLU())
        self.head = nn.Linear(hidden[-1], 10)

    def forward(self, x):
        return self.head(self.features(x))
