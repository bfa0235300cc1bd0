"""Run settings shared by every notebook: device, seeds, quick/full mode and output paths."""
import os
import random
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
MODE_VARIABLE = "DGM_MODE"
MODES = ("full", "quick")
STAGING_VARIABLE = "DGM_RECORDS_STAGING"  # set by `make run`: records go there until the notebook succeeds
PLAIN_PROGRESS_VARIABLE = "DGM_PLAIN_PROGRESS"  # set by `make run`: text progress bars without timings


def mode() -> str:
    """The run mode, read from $DGM_MODE: 'quick' (the default: small settings, what the grader runs) or 'full'
    (`make run`: the settings of the committed outputs; where no checkpoint exists, about half an hour of training on
    a 2-core CPU, docs/model-quality.md)."""
    value = os.environ.get(MODE_VARIABLE, "quick").strip().lower() or "quick"
    if value not in MODES:
        raise ValueError(f"{MODE_VARIABLE}={value!r} is not a run mode: set it to 'full' or 'quick'.")
    return value


def pick(*, quick, full):
    """The value for the current mode: `epochs = pick(quick=2, full=50)`."""
    return quick if mode() == "quick" else full


OUTPUT_VARIABLE = "DGM_OUTPUT"  # the grader points each submission's records and checkpoints at its own folder


def output_dir() -> Path:
    """Where records and checkpoints go: $DGM_OUTPUT if set, else the repository for full runs and .quick/ otherwise.

    Quick runs must never overwrite what a full run committed, so they get their own tree.
    """
    if os.environ.get(OUTPUT_VARIABLE):
        return Path(os.environ[OUTPUT_VARIABLE]).resolve()
    return ROOT if mode() == "full" else ROOT / ".quick"


def results_dir() -> Path:
    return output_dir() / "results"


def records_dir() -> Path:
    """Where record() writes: results_dir(), or the staging folder of a `make run` in progress."""
    staged = os.environ.get(STAGING_VARIABLE)
    return Path(staged) if staged else results_dir()


def progress(iterable, desc: str, unit: str):
    """A progress bar: a widget in Jupyter; in `make run`, plain text without timings that redraws itself every few
    seconds, so the terminal shows it move while the notebook keeps its final line only (nbclient coalesces the
    carriage returns), the same on every run."""
    if os.environ.get(PLAIN_PROGRESS_VARIABLE):
        from tqdm.std import tqdm

        return tqdm(iterable, desc=desc, unit=unit, file=sys.stdout, mininterval=5, dynamic_ncols=False,
                    bar_format="{desc}: {n_fmt}/{total_fmt} {unit}s{postfix}")
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, unit=unit)


def checkpoints_dir() -> Path:
    return output_dir() / "checkpoints"


def data_dir() -> Path:
    """Full MNIST lives here; $DGM_DATA overrides it (a relative path is taken from the repository's root, so it
    means the same folder whichever directory a notebook or a test runs in)."""
    return ROOT / os.environ.get("DGM_DATA", "data")


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
    if torch.cuda.is_available():
        # On a CPU the kernels this would swap (indexing's accumulate, put_, index_copy) already run serially, and the
        # call imports torch's compiler settings (2 s in every notebook that trains nothing).
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


@dataclass(frozen=True)
class Run:
    """What a notebook's first cell, start(), hands back: its name, device, mode and seed."""
    notebook: str
    device: torch.device
    mode: str
    seed: int

    @property
    def quick(self) -> bool:
        return self.mode == "quick"


_current = {}


def start(notebook: str, seed: int = 0) -> Run:
    """The first cell of every notebook: seed, device, plotting style, and where records go."""
    from . import plotting

    seed_everything(seed)
    plotting.use_style()
    run = Run(notebook=notebook, device=device(), mode=mode(), seed=seed)
    _current["run"] = run
    print(f"mode: {run.mode} ({MODE_VARIABLE}), seed: {seed}, records: {relative(results_dir())}/{notebook}.json")
    return run


def current_run() -> Run | None:
    """The Run made by start(), or None outside a notebook."""
    return _current.get("run")


def write_atomically(path: Path, write) -> Path:
    """Call write(temporary_path), then rename it over `path`: a crash or a full disk never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def relative(path: Path) -> str:
    """`path` from the repository root when it lies inside it (as printed in outputs), else in full."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)
