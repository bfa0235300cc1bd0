"""What the notebooks' training loops share: minibatches, the NaN stop, the code fingerprint, the checkpoint cache."""
import pytest
import torch

from helpers import CheckpointError, TrainingDiverged, fingerprint, minibatches, stop_if_diverged, trained
from tests.test_checkpoints import TinyNet


def fit_tiny(epochs=3, lr=0.05):
    """A tiny training run of the kind the notebooks write: seeded inside, so a rerun trains the same model."""
    torch.manual_seed(0)
    model = TinyNet()
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(1))
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        for index in minibatches(len(x), 16, "cpu"):
            loss = ((model(x[index])[:, :1] - y[index]) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        losses.append(loss.item())
    return model, {"loss": losses}


def test_minibatches_cover_every_item_once_and_refuse_no_data():
    batches = minibatches(10, 4, "cpu")
    assert [len(b) for b in batches] == [4, 4, 2] and sorted(torch.cat(batches).tolist()) == list(range(10))
    with pytest.raises(ValueError, match="no training data"):
        minibatches(0, 4, "cpu")


def test_a_nan_stops_training_naming_the_step():
    stop_if_diverged(torch.tensor([1.0, 2.0]), epoch=3)
    with pytest.raises(TrainingDiverged, match=r"became nan at step 2 of epoch 3.*no checkpoint"):
        stop_if_diverged(torch.tensor([1.0, 2.0, float("nan"), float("inf")]), epoch=3)


def test_the_fingerprint_follows_the_code_and_ignores_docstrings_comments_and_layout():
    def loss_a(x):
        """The mean square."""
        return (x**2).mean()  # squared

    def loss_b(x):
        return (x ** 2).mean()

    def loss_c(x):
        return (x**2).sum()

    assert fingerprint(loss_a) == fingerprint(loss_b) != fingerprint(loss_c)
    assert fingerprint(loss_a, loss_c) != fingerprint(loss_c, loss_a)


def test_a_matching_checkpoint_is_loaded_and_one_made_otherwise_is_trained_again(tmp_path, capsys):
    path, settings = tmp_path / "m.pt", {"epochs": 3, "code": fingerprint(fit_tiny)}
    model, history = trained(path, settings, TinyNet, fit_tiny)
    assert not history["from_checkpoint"] and not model.training and path.exists()

    def must_not_train():
        raise AssertionError("trained although a matching checkpoint exists")

    again, cached = trained(path, settings, TinyNet, must_not_train)
    assert cached["from_checkpoint"] and cached["loss"] == history["loss"] and not again.training
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    # a corrected answer changes the code's fingerprint: the stale model is trained again and replaced, never loaded
    changed = {**settings, "epochs": 4, "code": "another fingerprint"}
    retrained, fresh = trained(path, changed, TinyNet, lambda: fit_tiny(4))
    assert not fresh["from_checkpoint"] and len(fresh["loss"]) == 4
    assert "trained under other settings or by other code (changed: code, epochs): training again" in \
        capsys.readouterr().out
    assert trained(path, changed, TinyNet, must_not_train)[1]["from_checkpoint"]


def test_a_file_that_is_no_checkpoint_of_the_collection_is_named_and_never_overwritten(tmp_path):
    path = tmp_path / "m.pt"
    path.write_bytes(b"notes of my own")
    with pytest.raises(CheckpointError, match="not a readable checkpoint of this collection"):
        trained(path, {}, TinyNet, fit_tiny)
    assert path.read_bytes() == b"notes of my own"


def test_a_rerun_trains_what_a_clean_run_trains():
    """After Ctrl-C the usual habit is to run the cell again: the loop seeds itself, so it trains the same model."""
    first, _ = fit_tiny()
    torch.rand(100)
    second, _ = fit_tiny()
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def test_without_a_checkpoint_nothing_is_written(tmp_path):
    model, history = trained(None, {}, TinyNet, fit_tiny)
    assert not history["from_checkpoint"] and list(tmp_path.iterdir()) == []
