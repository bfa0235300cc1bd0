"""Architectures tried in the recipe experiments of REPORT.md (issue 15); not used by the notebooks yet."""
from torch import nn

from helpers.checkpoints import register_model
from helpers.models import ACTIVATIONS, PIXELS, VAE, ConvGenerator, mlp


@register_model
class RegularizedVAE(VAE):
    """A Bernoulli VAE whose encoder and decoder MLPs apply dropout after every hidden activation (off in eval mode).

    Dropout layers hold no parameters, so with the same seed it starts from exactly the weights of
    VAE(latent_dim, hidden, activation=activation), and with both rates 0 it computes the same function.
    """

    def __init__(self, latent_dim: int = 2, hidden: tuple = (512, 256), encoder_dropout: float = 0.0,
                 decoder_dropout: float = 0.0, activation: str = "elu"):
        nn.Module.__init__(self)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r}: use one of {sorted(ACTIVATIONS)}.")
        self.config = {"latent_dim": latent_dim, "hidden": list(hidden), "encoder_dropout": encoder_dropout,
                       "decoder_dropout": decoder_dropout, "activation": activation}
        self.latent_dim, self.fixed_std, self.likelihood, self.precision = latent_dim, None, "bernoulli", 1.0
        self.encoder = nn.Sequential(*mlp([PIXELS, *hidden, 2 * latent_dim], activation, dropout=encoder_dropout))
        self.decoder = nn.Sequential(*mlp([latent_dim, *reversed(hidden), PIXELS], activation, dropout=decoder_dropout))


@register_model
class TransposedConvGenerator(ConvGenerator):
    """The GPU experiments' generator (ConvGenerator in REPORT.md's call 1-3 results): helpers.ConvGenerator with
    DCGAN's stride-2 transposed convolutions (kernel 4) in place of upsampling and a 3x3 convolution."""

    @staticmethod
    def upsample(c_in: int, c_out: int) -> list:
        return [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)]


@register_model
class ConvDiscriminator(nn.Module):
    """A DCGAN discriminator of flat images (n, 784) in [-1, 1]: two stride-2 convolutions (LeakyReLU 0.2, dropout,
    optionally batch normalisation after the second), then a linear layer to the logit that the image is real."""

    def __init__(self, channels: tuple = (32, 64), dropout: float = 0.3, batch_norm: bool = False):
        super().__init__()
        c1, c2 = channels
        self.config = {"channels": list(channels), "dropout": dropout, "batch_norm": batch_norm}
        self.net = nn.Sequential(
            nn.Unflatten(1, (1, 28, 28)),
            nn.Conv2d(1, c1, 4, stride=2, padding=1), nn.LeakyReLU(0.2), nn.Dropout(dropout),    # 14 x 14
            nn.Conv2d(c1, c2, 4, stride=2, padding=1), *([nn.BatchNorm2d(c2)] if batch_norm else []),
            nn.LeakyReLU(0.2), nn.Dropout(dropout),                                              # 7 x 7
            nn.Flatten(), nn.Linear(c2 * 7 * 7, 1))

    def forward(self, x):
        return self.net(x).squeeze(-1)


@register_model
class ConvVAE(VAE):
    """A Bernoulli VAE with convolutional networks: two stride-2 convolutions and a hidden layer of 256 in the
    encoder, the mirror image (transposed convolutions) in the decoder; ELU throughout. The decoder maps z of any
    leading shape (samples, n, latent_dim) to logits (samples, n, 784), as VAE's MLP decoder does."""

    def __init__(self, latent_dim: int = 2, channels: tuple = (16, 32), hidden: int = 256):
        nn.Module.__init__(self)
        c1, c2 = channels
        self.config = {"latent_dim": latent_dim, "channels": list(channels), "hidden": hidden}
        self.latent_dim, self.fixed_std, self.likelihood, self.precision = latent_dim, None, "bernoulli", 1.0
        self.encoder = nn.Sequential(
            nn.Unflatten(-1, (1, 28, 28)), nn.Conv2d(1, c1, 4, 2, 1), nn.ELU(), nn.Conv2d(c1, c2, 4, 2, 1), nn.ELU(),
            nn.Flatten(), nn.Linear(c2 * 49, hidden), nn.ELU(), nn.Linear(hidden, 2 * latent_dim))
        self.decoder = _FlatLeading(nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.ELU(), nn.Linear(hidden, c2 * 49), nn.ELU(), nn.Unflatten(1, (c2, 7, 7)),
            nn.ConvTranspose2d(c2, c1, 4, 2, 1), nn.ELU(), nn.ConvTranspose2d(c1, 1, 4, 2, 1), nn.Flatten()))


class _FlatLeading(nn.Module):
    """Applies a network of (n, d) inputs to inputs of any leading shape (..., d)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, z):
        return self.net(z.reshape(-1, z.shape[-1])).reshape(*z.shape[:-1], -1)
