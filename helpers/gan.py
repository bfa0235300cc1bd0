"""A GAN for 28x28 digits (MLP generator and discriminator), and a small classifier that measures its samples."""
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .checkpoints import register_model, save_checkpoint
from .training import cached_history, fit, stop_if_diverged, take_snapshot


@register_model
class Generator(nn.Module):
    """G(z): noise z ~ N(0, I) to an image with pixels in [-1, 1] (tanh), through an MLP with batch normalisation."""

    def __init__(self, latent_dim: int = 64, hidden: tuple = (256, 512)):
        super().__init__()
        self.config = {"latent_dim": latent_dim, "hidden": list(hidden)}
        self.latent_dim = latent_dim
        layers, width = [], latent_dim
        for h in hidden:
            # batch normalisation keeps the generator's units well scaled; without it the MLP GAN
            # reached a Frechet distance of 56 after 90 epochs instead of 10
            layers += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.LeakyReLU(0.2)]
            width = h
        self.net = nn.Sequential(*layers, nn.Linear(width, 784), nn.Tanh())

    def forward(self, z):
        return self.net(z)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None):
        """n images as (n, 784) in [0, 1], from noise drawn on the CPU (the same on any device), in eval mode."""
        was_training = self.training
        self.eval()  # batch statistics must not make one sample depend on the others
        z = torch.randn(n, self.latent_dim, generator=generator).to(next(self.parameters()).device)
        images = (self(z) + 1) / 2
        self.train(was_training)
        return images


class Discriminator(nn.Module):
    """D(x): the logit of the probability that an image in [-1, 1] is real."""

    def __init__(self, hidden: tuple = (512, 256), dropout: float = 0.3):
        super().__init__()
        layers, width = [], 784
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2), nn.Dropout(dropout)]
            width = h
        self.net = nn.Sequential(*layers, nn.Linear(width, 1))

    def forward(self, x):
        return self.net(x).squeeze(-1)


def to_tanh_range(x):
    """Pixels from [0, 1] to the generator's output range [-1, 1]."""
    return 2 * x - 1


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


def gan_step(generator, discriminator, opt_g, opt_d, real):
    """One discriminator step on real and generated images, then one generator step on the non-saturating loss."""
    z = torch.randn(len(real), generator.latent_dim, device=real.device)
    fake = generator(z)
    logits_real, logits_fake = discriminator(real), discriminator(fake.detach())
    # -[log D(x) + log(1 - D(G(z)))], as binary cross-entropy on logits
    loss_d = (F.binary_cross_entropy_with_logits(logits_real, torch.ones_like(logits_real))
              + F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake)))
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    logits = discriminator(fake)
    loss_g = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))  # -log D(G(z))
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    return torch.stack([loss_d.detach(), loss_g.detach(), torch.sigmoid(logits_real).mean().detach(),
                        torch.sigmoid(logits_fake).mean().detach()])


def train_gan(generator, discriminator, images, *, epochs: int, batch_size: int = 64, lr: float = 2e-4,
              snapshot=None, checkpoint=None, settings: dict | None = None, retrain: bool = False, desc="GAN"):
    """Adam (lr 2e-4, betas 0.5, 0.999) for both players over `images` in [0, 1]; the generator is cached."""
    cached = cached_history(generator, checkpoint, settings, retrain, GANHistory)
    if cached is not None:
        return cached
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=(0.5, 0.999))
    real_all = to_tanh_range(images)
    history, start = GANHistory(), time.perf_counter()
    bar = tqdm(range(epochs), desc=desc, unit="epoch")
    for epoch in bar:
        generator.train(), discriminator.train()
        batches = torch.randperm(len(real_all), device=real_all.device).split(batch_size)
        stats = torch.empty(len(batches), 4, device=real_all.device)  # checked once an epoch: no per-step sync
        for step, index in enumerate(batches):
            stats[step] = gan_step(generator, discriminator, opt_g, opt_d, real_all[index])
        stop_if_diverged(stats[:, :2].sum(1), epoch, len(batches))
        means = stats.mean(0).tolist()
        for values, mean in zip((history.loss_d, history.loss_g, history.d_real, history.d_fake), means):
            values.append(mean)
        bar.set_postfix(D=f"{history.loss_d[-1]:.3f}", G=f"{history.loss_g[-1]:.3f}")
        take_snapshot(snapshot, epoch + 1, generator, history.snapshots)
    bar.close()
    generator.eval()
    history.seconds = time.perf_counter() - start
    if checkpoint is not None:
        save_checkpoint(checkpoint, generator, settings, history=asdict(history))
    return history


@register_model
class DigitClassifier(nn.Module):
    """A small MLP classifier of digits in [0, 1]; its penultimate layer gives the features of the Frechet distance."""

    def __init__(self, hidden: tuple = (256, 128)):
        super().__init__()
        self.config = {"hidden": list(hidden)}
        layers, width = [], 784
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        return self.head(self.features(x))


def train_classifier(data, *, epochs: int, checkpoint=None, desc="classifier"):
    """The classifier, trained (or loaded) on data.train_x with early stopping on the validation split's loss."""
    classifier = DigitClassifier().to(data.train_x.device)
    settings = {"epochs": epochs, "data": data.source, "train_size": len(data.train_x)}
    fit(classifier, lambda m, x, y: F.cross_entropy(m(x), y), (data.train_x, data.train_y),
        torch.optim.Adam(classifier.parameters(), lr=1e-3, weight_decay=1e-4), epochs=epochs, batch_size=128,
        validate=lambda m: F.cross_entropy(m(data.val_x), data.val_y).item(), patience=5,
        checkpoint=checkpoint, settings=settings, desc=desc)
    return classifier.eval()


def gaussian_frechet_distance(a, b):
    """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between Gaussians fitted to two feature sets."""
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T
    # tr (S_a S_b)^(1/2) = sum of the square roots of the eigenvalues of S_a^(1/2) S_b S_a^(1/2) (symmetric PSD)
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
    return ((mu_a - mu_b).square().sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * cross).item()


@torch.no_grad()
def sample_quality(classifier, images, reference_features):
    """Frechet distance to the reference features, class histogram and mean confidence of `images` in [0, 1]."""
    probabilities = torch.softmax(classifier(images), 1)
    histogram = torch.bincount(probabilities.argmax(1), minlength=10).float() / len(images)
    return {"frechet": gaussian_frechet_distance(classifier.features(images), reference_features),
            "class_histogram": histogram.tolist(), "mean_confidence": probabilities.max(1).values.mean().item()}
