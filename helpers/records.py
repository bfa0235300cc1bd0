"""Key figures of each answer, written to results/<notebook>.json: the evidence a reader, a TA or a test looks at.

The files are strict JSON (infinities are written as the strings "inf" and "-inf"), written atomically, and merged
under a lock (filelock: the same on Linux, macOS and Windows) so that notebooks run side by side never lose each
other's records. Numbers keep 6 significant digits: the digits beyond differ from one CPU to the next (a float32 sum
in its 7th or 8th digit), and a record must read the same wherever the notebook ran.
"""
import json
import math
import re
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock

from . import runtime

INFINITIES = {math.inf: "inf", -math.inf: "-inf"}
SIGNIFICANT_DIGITS = 6


def to_json(value):
    """Plain JSON types from tensors, arrays and numpy scalars; NaN is refused (it hides a bug), infinities spelled."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().tolist()
    elif isinstance(value, np.ndarray | np.generic):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            raise ValueError("A record holds NaN: compute the figure again, a NaN is never an answer.")
        return INFINITIES.get(value) or float(f"{value:.{SIGNIFICANT_DIGITS}g}")
    raise TypeError(f"Cannot record a {type(value).__name__}: record numbers, strings, lists or dicts.")


def write_json(path: Path, obj) -> None:
    """Write strict JSON atomically (through a temporary file and a rename)."""
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, allow_nan=False)
            f.write("\n")
    runtime.write_atomically(path, write)


def locked(path: Path) -> FileLock:
    """An exclusive lock beside `path` (a hidden .lock file) for a read-merge-write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(path.parent / f".{path.name}.lock")


def record(question_id: str, figures: dict, notebook: str | None = None, directory: Path | None = None) -> None:
    """Store `figures` under `question_id` in results/<notebook>.json (merging with earlier ids)."""
    if not isinstance(figures, dict) or not figures:
        raise ValueError(f"record({question_id!r}, ...) needs a non-empty dict of figures.")
    if notebook is None:
        if runtime.current_run() is None:
            raise RuntimeError("No notebook is started: call helpers.start('<notebook name>') first.")
        notebook = runtime.current_run().notebook
    if not re.fullmatch(r"[\w.-]+", notebook) or notebook.startswith("."):
        raise ValueError(f"{notebook!r} is not a notebook name: use letters, digits, '_', '-' and '.', no folders.")
    path = Path(directory or runtime.records_dir()) / f"{notebook}.json"
    figures = to_json(figures)
    with locked(path):
        records = read_records(path) if path.exists() else {}
        records[question_id] = figures
        write_json(path, records)
    print(f"recorded {question_id} in {runtime.relative(runtime.results_dir() / path.name)}")


def read_records(path: Path) -> dict:
    """The records of one notebook, as written by record(); a damaged file is named, with the fix."""
    path = Path(path)
    try:
        with open(path) as f:
            records = json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}). Restore it with `git checkout -- {path.name}` "
                         "or delete it and re-run its notebook.") from error
    if not isinstance(records, dict):
        raise ValueError(f"{path} does not hold records (a JSON object of question ids). Delete it and re-run "
                         "its notebook.")
    return records
