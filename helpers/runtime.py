"""Run settings shared by every notebook: device, seeds, quick/full mode and output paths."""
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
MODE_VARIABLE = "DGM_MODE"
MODES = ("full", "quick")


def mode() -> str:
    """The run mode, 'full' (default) or 'quick' (CI and tests), read from $DGM_MODE."""
    value = os.environ.get(MODE_VARIABLE, "full").strip().lower() or "full"
    if value not in MODES:
        raise ValueError(f"{MODE_VARIABLE}={value!r} is not a run mode: set it to 'full' or 'quick'.")
    return value


def is_quick() -> bool:
    """True when the notebooks should run their small CI configuration."""
    return mode() == "quick"


def pick(*, quick, full):
    """The value for the current mode: `epochs = pick(quick=2, full=50)`."""
    return quick if is_quick() else full


def output_dir() -> Path:
    """Where records and checkpoints go: the repository itself for full runs, .quick/ otherwise.

    Quick runs must never overwrite what a full run committed, so they get their own tree.
    """
    return ROOT if mode() == "full" else ROOT / ".quick"


def results_dir() -> Path:
    return output_dir() / "results"


def checkpoints_dir() -> Path:
    return output_dir() / "checkpoints"


def data_dir() -> Path:
    """Full MNIST lives here; $DGM_DATA overrides it."""
    return Path(os.environ.get("DGM_DATA", ROOT / "data"))


_announced = set()


def device(announce: bool = True) -> torch.device:
    """CUDA when available, else CPU; says which once per process."""
    chosen = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if announce and chosen.type not in _announced:
        _announced.add(chosen.type)
        name = torch.cuda.get_device_name(chosen) if chosen.type == "cuda" else "CPU"
        print(f"device: {chosen.type} ({name})")
    return chosen


def seed_everything(seed: int = 0) -> None:
    """Seed python, numpy and torch, and ask torch for deterministic kernels where it has them."""
    # cuBLAS needs this set before its first call to be deterministic.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


@dataclass(frozen=True)
class Run:
    """What a notebook's setup cell hands back: its name, device, mode and seed."""
    notebook: str
    device: torch.device
    mode: str
    seed: int

    @property
    def quick(self) -> bool:
        return self.mode == "quick"


_current = {}


def setup(notebook: str, seed: int = 0) -> Run:
    """The first cell of every notebook: seed, device, plotting style, and where records go."""
    from . import plotting

    seed_everything(seed)
    plotting.use_style()
    run = Run(notebook=notebook, device=device(), mode=mode(), seed=seed)
    _current["run"] = run
    print(f"mode: {run.mode} ({MODE_VARIABLE}), seed: {seed}, records: {_relative(results_dir())}/{notebook}.json")
    return run


def active_run() -> Run | None:
    """The Run made by setup(), or None outside a notebook."""
    return _current.get("run")


def current_run() -> Run:
    """The Run made by setup(); records need it to know which notebook they belong to."""
    if "run" not in _current:
        raise RuntimeError("No notebook is set up: call helpers.setup('<notebook name>') first.")
    return _current["run"]


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)
