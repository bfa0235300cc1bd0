"""Shared pieces of the deep generative models notebooks: run start, data, records, checkpoints, training, plots,
architectures. Answer code is not here: it lives in the notebooks (and, exported, in `answers/`)."""
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
from .training import GANHistory, History, TrainingDiverged, fit, fit_gan, minibatches, seeded

__all__ = [
    "CheckpointError", "ConvGenerator", "DataError", "DigitClassifier", "Discriminator", "GANHistory", "Generator",
    "History", "MNIST", "PIXELS", "ROOT", "TrainingDiverged", "VAE", "checkpoints_dir", "current_run", "device",
    "dynamic_binarize", "evaluation_sets", "fit", "fit_gan", "fixed_binarize", "image_grid", "load_checkpoint",
    "load_mnist", "load_model", "minibatches", "mlp", "mode", "pick", "progress", "read_records", "record",
    "register_model", "results_dir", "save_checkpoint", "seed_everything", "seeded", "show_images", "start",
    "use_style",
]
