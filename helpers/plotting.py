"""A small consistent plot style and image grids of MNIST digits."""
import matplotlib.pyplot as plt
import torch

STYLE = {
    "figure.figsize": (6.0, 3.6),
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "image.cmap": "gray",
    "legend.frameon": False,
}


def use_style() -> None:
    """Apply the collection's matplotlib style (start() calls this)."""
    plt.rcParams.update(STYLE)


def image_grid(images: torch.Tensor, nrow: int = 10, padding: int = 2) -> torch.Tensor:
    """(N, 784) or (N, 28, 28) images in [0, 1] as one (H, W) grid tensor, white gaps between them."""
    # imported here, not at the top: only a notebook that draws digits imports torchvision
    from torchvision.utils import make_grid

    images = images.detach().float().cpu().reshape(-1, 1, 28, 28)
    return make_grid(images, nrow=nrow, padding=padding, pad_value=1.0)[0]


def show_images(images: torch.Tensor, nrow: int = 10, title: str | None = None, ax=None, scale: float = 0.6):
    """Draw digits as a grid; returns the axes."""
    grid = image_grid(images, nrow=nrow)
    if ax is None:
        rows = -(-len(images) // nrow)
        _, ax = plt.subplots(figsize=(scale * min(nrow, len(images)), scale * rows))
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax
