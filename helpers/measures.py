"""How good are generated digits: a classifier's Frechet distance, class histogram and confidence; isolated pixels."""
import copy

import torch
import torch.nn.functional as F

from .models import DigitClassifier
from .training import fingerprint, minibatches, trained


def train_classifier(data, *, epochs: int, checkpoint=None, lr: float = 1e-3, weight_decay: float = 1e-4,
                     batch_size: int = 128, patience: int = 5):
    """The classifier of the measures, trained (or loaded) on the training digits, the weights of its best epoch on
    the validation split's cross-entropy kept (training stops `patience` epochs after it)."""
    device = data.train_x.device

    def train():
        torch.manual_seed(0)
        model = DigitClassifier().to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        validation, best_epoch, best_state = [], 0, None
        for epoch in range(epochs):
            model.train()
            for index in minibatches(len(data.train_x), batch_size, device):
                loss = F.cross_entropy(model(data.train_x[index]), data.train_y[index])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            model.eval()
            with torch.no_grad():
                validation.append(F.cross_entropy(model(data.val_x), data.val_y).item())
            if validation[-1] <= min(validation):
                best_epoch, best_state = epoch, copy.deepcopy(model.state_dict())
            elif epoch - best_epoch >= patience:
                break
        model.load_state_dict(best_state)
        return model, {"validation_loss": validation, "best_epoch": best_epoch + 1}

    settings = {"epochs": epochs, "lr": lr, "weight_decay": weight_decay, "batch_size": batch_size,
                "patience": patience, "data": data.source, "train_size": len(data.train_x), "code": fingerprint(train)}
    classifier, _ = trained(checkpoint, settings, lambda: DigitClassifier().to(device), train)
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
