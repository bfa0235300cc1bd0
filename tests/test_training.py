import pytest
import torch
from torch import nn

from helpers import CheckpointError, TrainingDiverged, fit
from tests.test_checkpoints import TinyNet


def regression_data(n=64):
    x = torch.randn(n, 3)
    return x, x @ torch.tensor([[1.0], [-2.0], [0.5]])


def mse(model, x, y):
    return ((model(x)[:, :1] - y) ** 2).mean()


def test_fit_lowers_the_loss_and_keeps_a_history():
    model = TinyNet()
    history = fit(model, mse, regression_data(), torch.optim.Adam(model.parameters(), 0.05), epochs=30, batch_size=16)
    assert len(history.train_loss) == 30
    assert history.train_loss[-1] < 0.1 * history.train_loss[0]
    assert not model.training


def test_nan_stops_training_with_the_step_number(tmp_path):
    calls = []

    def loss_fn(model, x, y):
        calls.append(1)
        loss = mse(model, x, y)
        return loss * float("nan") if len(calls) == 8 else loss  # the 8th step is step 7

    model = TinyNet()
    with pytest.raises(TrainingDiverged, match=r"at step 7 \(epoch 1, batch 3\).*no checkpoint"):
        fit(model, loss_fn, regression_data(40), torch.optim.SGD(model.parameters(), 0.01), epochs=3, batch_size=10,
            checkpoint=tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()


def test_a_matching_checkpoint_skips_training_and_a_mismatch_is_refused(tmp_path):
    path, data, settings = tmp_path / "m.pt", regression_data(), {"epochs": 5}
    model = TinyNet()
    first = fit(model, mse, data, torch.optim.Adam(model.parameters(), 0.05), epochs=5, batch_size=16,
                checkpoint=path, settings=settings)

    def must_not_train(*args):
        raise AssertionError("trained although a matching checkpoint exists")

    again = TinyNet()
    cached = fit(again, must_not_train, data, torch.optim.Adam(again.parameters()), epochs=5, batch_size=16,
                 checkpoint=path, settings=settings)
    assert cached.from_checkpoint and cached.train_loss == first.train_loss
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))

    with pytest.raises(CheckpointError, match="other settings"):
        fit(TinyNet(), mse, data, torch.optim.Adam(again.parameters()), epochs=6, batch_size=16,
            checkpoint=path, settings={"epochs": 6})
    retrained = fit(TinyNet(), mse, data, torch.optim.Adam(again.parameters()), epochs=6, batch_size=16,
                    checkpoint=path, settings={"epochs": 6}, retrain=True)
    assert not retrained.from_checkpoint and len(retrained.train_loss) == 6


def test_early_stopping_keeps_the_best_weights():
    model = nn.Linear(1, 1)
    nn.init.zeros_(model.weight)
    snapshots = []

    def validate(m):
        snapshots.append(m.weight.item())
        return [3.0, 1.0, 2.0, 2.5, 2.6, 2.7, 2.8][len(snapshots) - 1]

    def loss_fn(m, x):
        return (m(x) - 1).pow(2).mean()

    history = fit(model, loss_fn, torch.ones(8, 1), torch.optim.SGD(model.parameters(), 0.1), epochs=7,
                  batch_size=8, validate=validate, patience=2)
    assert history.stopped_early and history.best_epoch == 1 and len(history.val_loss) == 4
    assert model.weight.item() == snapshots[1]


def test_resample_gives_fresh_inputs_each_epoch():
    seen = []

    def loss_fn(m, x):
        seen.append(x.sum().item())
        return m(x).sum() * 0

    model = nn.Linear(4, 1)
    fit(model, loss_fn, torch.full((6, 4), 0.5), torch.optim.SGD(model.parameters(), 0.1), epochs=4, batch_size=6,
        resample=torch.bernoulli)
    assert len(set(seen)) > 1


def test_snapshots_are_kept_and_survive_the_checkpoint(tmp_path):
    model, data = TinyNet(), regression_data()
    taken = fit(model, mse, data, torch.optim.Adam(model.parameters(), 0.05), epochs=4, batch_size=16,
                snapshot=lambda epoch, m: m.layer.weight.clone() if epoch in (1, 4) else None,
                checkpoint=tmp_path / "m.pt")
    assert sorted(taken.snapshots) == [1, 4] and not torch.equal(taken.snapshots[1], taken.snapshots[4])
    cached = fit(TinyNet(), mse, data, None, epochs=4, batch_size=16, checkpoint=tmp_path / "m.pt")
    assert torch.equal(cached.snapshots[4], model.layer.weight)
