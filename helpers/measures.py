"""How good are generated digits: a classifier's Frechet distance, class histogram and confidence; isolated pixels."""
import functools

import torch
import torch.nn.functional as F

from .models import DigitClassifier
from .training import fit


def train_classifier(data, *, epochs: int, checkpoint=None, lr: float = 1e-3, weight_decay: float = 1e-4,
                     batch_size: int = 128, patience: int = 5, desc="classifier"):
    """The classifier, trained (or loaded) on data.train_x with early stopping on the validation split's loss."""
    classifier, _ = fit(
        DigitClassifier, lambda m, x, y: F.cross_entropy(m(x), y), (data.train_x, data.train_y),
        optimizer=functools.partial(torch.optim.Adam, lr=lr, weight_decay=weight_decay), epochs=epochs,
        batch_size=batch_size, patience=patience,
        validate=lambda m: F.cross_entropy(m(data.val_x), data.val_y).item(), checkpoint=checkpoint,
        settings={"loss": "cross-entropy", "validation": "cross-entropy on the validation split",
                  "data": data.source, "train_size": len(data.train_x)}, desc=desc)
    return classifier


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


@torch.no_grad()
def isolated_pixels(images):
    """Salt-and-pepper noise per image, on average: pixels above 0.5 with no 8-neighbour above 0.5 (salt), plus
    pixels below 0.5 whose 4 neighbours are all above 0.5 (pepper); images (n, 784) in [0, 1]."""
    on = (images.reshape(-1, 1, 28, 28) > 0.5).float()
    ring = torch.ones(1, 1, 3, 3, device=on.device)
    ring[0, 0, 1, 1] = 0
    cross = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], device=on.device).view(1, 1, 3, 3)
    salt = (on == 1) & (F.conv2d(on, ring, padding=1) == 0)
    pepper = (on == 0) & (F.conv2d(on, cross, padding=1) == 4)
    return (salt | pepper).sum((1, 2, 3)).float().mean().item()
