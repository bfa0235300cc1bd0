"""Shared pieces of the deep generative models notebooks: run setup, data, records, checkpoints, training, plots."""
from .checkpoints import CheckpointError, load_checkpoint, load_model, register_model, save_checkpoint
from .data import MNIST, DataError, dynamic_binarize, evaluation_sets, fixed_binarize, load_mnist
from .gan import DigitClassifier, Generator  # importing registers the models for load_model
from .plotting import image_grid, show_images, use_style
from .records import read_records, record
from .runtime import ROOT, checkpoints_dir, device, is_quick, mode, pick, results_dir, seed_everything, setup
from .training import History, TrainingDiverged, fit
from .vae import VAE, train_vae

__all__ = [
    "CheckpointError", "DataError", "DigitClassifier", "Generator", "History", "MNIST", "ROOT", "TrainingDiverged",
    "VAE", "checkpoints_dir", "device", "dynamic_binarize", "evaluation_sets", "fit", "fixed_binarize",
    "image_grid", "is_quick", "load_checkpoint", "load_mnist", "load_model", "mode", "pick", "read_records",
    "record", "register_model", "results_dir", "save_checkpoint", "seed_everything", "setup", "show_images",
    "train_vae", "use_style",
]
