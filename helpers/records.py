"""Key figures of each answer, written to results/<notebook>.json for graders and tests."""
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from . import runtime


def to_json(value):
    """Plain JSON types from tensors, arrays and numpy scalars; NaN is refused (it hides a bug)."""
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
        return value
    raise TypeError(f"Cannot record a {type(value).__name__}: record numbers, strings, lists or dicts.")


def write_json_atomic(path: Path, obj) -> None:
    """Write JSON through a temporary file and a rename, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)  # Infinity is allowed on purpose
            f.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a record is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def record(question_id: str, figures: dict, notebook: str | None = None, directory: Path | None = None) -> None:
    """Store `figures` under `question_id` in results/<notebook>.json (merging with earlier ids)."""
    if not isinstance(figures, dict) or not figures:
        raise ValueError(f"record({question_id!r}, ...) needs a non-empty dict of figures.")
    notebook = notebook or runtime.current_run().notebook
    path = Path(directory or runtime.results_dir()) / f"{notebook}.json"
    records = read_records(path) if path.exists() else {}
    records[question_id] = to_json(figures)
    write_json_atomic(path, records)
    print(f"recorded {question_id} in {runtime._relative(path)}")


def read_records(path: Path) -> dict:
    """The records of one notebook, as written by record()."""
    with open(path) as f:
        return json.load(f)
