"""What the notebooks share and no question asks for: the run's start, data, records, checkpoints, what training loops
share, plots, architectures. Answer code is not here: it lives in the notebooks (and, exported, in `answers/`)."""
from . import cpu  # noqa: F401  (first: it pins the CPU kernels' instruction set before anything imports torch)
from .checkpoints import CheckpointError, load_checkpoint, load_model, register_model, save_checkpoint
from .data import MNIST, DataError, dynamic_binarize, evaluation_sets, fixed_binarize, load_mnist
from .models import (  # importing registers the models
    PIXELS,
    VAE,
    ConvGenerator,
    DigitClassifier,
    Discriminator,
    Generator,
    mlp,
)
from .plotting import image_grid, show_images, use_style
from .records import read_records, record
from .runtime import (
                      ROOT,
                      checkpoints_dir,
                      current_run,
                      device,
                      mode,
                      pick,
                      progress,
                      results_dir,
                      seed_everything,
                      start,
)
from .training import TrainingDiverged, fingerprint, minibatches, stop_if_diverged, trained

__all__ = [
    "CheckpointError", "ConvGenerator", "DataError", "DigitClassifier", "Discriminator", "Generator", "MNIST", "PIXELS",
    "ROOT", "TrainingDiverged", "VAE", "checkpoints_dir", "current_run", "device", "dynamic_binarize",
    "evaluation_sets", "fingerprint", "fixed_binarize", "image_grid", "load_checkpoint", "load_mnist", "load_model",
    "minibatches", "mlp", "mode", "pick", "progress", "read_records", "record", "register_model", "results_dir",
    "save_checkpoint", "seed_everything", "show_images", "start", "stop_if_diverged", "trained", "use_style",
]
