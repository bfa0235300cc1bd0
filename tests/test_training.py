import functools

import pytest
import torch
from torch import nn

from helpers import CheckpointError, TrainingDiverged, fit
from tests.test_checkpoints import TinyNet

ADAM = functools.partial(torch.optim.Adam, lr=0.05)


def regression_data(n=64):
    x = torch.randn(n, 3, generator=torch.Generator().manual_seed(n))
    return x, x @ torch.tensor([[1.0], [-2.0], [0.5]])


def mse(model, x, y):
    return ((model(x)[:, :1] - y) ** 2).mean()


def test_fit_lowers_the_loss_and_keeps_a_history():
    model, history = fit(TinyNet, mse, regression_data(), optimizer=ADAM, epochs=30, batch_size=16)
    assert len(history.train_loss) == 30
    assert history.train_loss[-1] < 0.1 * history.train_loss[0]
    assert not model.training


def test_a_rerun_starts_from_the_same_fresh_model():
    """After Ctrl-C the usual habit is to re-run the cell: it must train what a clean run trains."""
    first, _ = fit(TinyNet, mse, regression_data(), optimizer=ADAM, epochs=3, batch_size=16)
    torch.rand(100)  # a different global random state before the re-run
    second, _ = fit(TinyNet, mse, regression_data(), optimizer=ADAM, epochs=3, batch_size=16)
    assert torch.equal(first.layer.weight, second.layer.weight)


def test_nan_stops_training_with_the_step_number(tmp_path):
    calls = []

    def loss_fn(model, x, y):
        calls.append(1)
        loss = mse(model, x, y)
        return loss * float("nan") if len(calls) == 8 else loss  # the 8th step is step 7

    with pytest.raises(TrainingDiverged, match=r"at step 7 \(epoch 1, batch 3\).*no checkpoint"):
        fit(TinyNet, loss_fn, regression_data(40), optimizer=functools.partial(torch.optim.SGD, lr=0.01), epochs=3,
            batch_size=10, checkpoint=tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()


def test_a_nan_validation_loss_is_divergence_and_saves_nothing(tmp_path):
    with pytest.raises(TrainingDiverged, match="validation loss became nan"):
        fit(TinyNet, mse, regression_data(), optimizer=ADAM, epochs=3, batch_size=16,
            validate=lambda m: float("nan"), checkpoint=tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()


def test_empty_training_data_is_named():
    with pytest.raises(ValueError, match="no training data"):
        fit(TinyNet, mse, (torch.empty(0, 3), torch.empty(0, 1)), optimizer=ADAM, epochs=1, batch_size=4)


def test_a_matching_checkpoint_skips_training_and_a_mismatch_is_refused(tmp_path):
    path, data, settings = tmp_path / "m.pt", regression_data(), {"data": "synthetic"}
    model, first = fit(TinyNet, mse, data, optimizer=ADAM, epochs=5, batch_size=16, checkpoint=path, settings=settings)

    def must_not_train(*args):
        raise AssertionError("trained although a matching checkpoint exists")

    again, cached = fit(TinyNet, must_not_train, data, optimizer=ADAM, epochs=5, batch_size=16, checkpoint=path,
                        settings=settings)
    assert cached.from_checkpoint and cached.train_loss == first.train_loss
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    # every input that changes the weights is part of the key: epochs, batch size, optimizer and its settings, seed
    for change, message in (({"epochs": 6}, "epochs: saved 5, asked 6"), ({"batch_size": 8}, "batch_size"),
                            ({"optimizer": functools.partial(torch.optim.Adam, lr=0.01)}, "lr=0.01"),
                            ({"seed": 1}, "seed: saved 0, asked 1")):
        arguments = {"optimizer": ADAM, "epochs": 5, "batch_size": 16, **change}
        with pytest.raises(CheckpointError, match=f"other settings.*{message}"):
            fit(TinyNet, mse, data, checkpoint=path, settings=settings, **arguments)
    _, retrained = fit(TinyNet, mse, data, optimizer=ADAM, epochs=6, batch_size=16, checkpoint=path, settings=settings,
                       retrain=True)
    assert not retrained.from_checkpoint and len(retrained.train_loss) == 6


def test_early_stopping_keeps_the_best_weights():
    snapshots = []

    def make():
        model = nn.Linear(1, 1)
        nn.init.zeros_(model.weight)
        return model

    def validate(m):
        snapshots.append(m.weight.item())
        return [3.0, 1.0, 2.0, 2.5, 2.6, 2.7, 2.8][len(snapshots) - 1]

    def loss_fn(m, x):
        return (m(x) - 1).pow(2).mean()

    model, history = fit(make, loss_fn, torch.ones(8, 1), optimizer=functools.partial(torch.optim.SGD, lr=0.1),
                         epochs=7, batch_size=8, validate=validate, patience=2)
    assert history.stopped_early and history.best_epoch == 1 and len(history.val_loss) == 4
    assert model.weight.item() == snapshots[1]


def test_resample_gives_fresh_inputs_each_epoch():
    seen = []

    def loss_fn(m, x):
        seen.append(x.sum().item())
        return m(x).sum() * 0

    fit(lambda: nn.Linear(4, 1), loss_fn, torch.full((6, 4), 0.5), optimizer=functools.partial(torch.optim.SGD, lr=0.1),
        epochs=4, batch_size=6, resample=torch.bernoulli)
    assert len(set(seen)) > 1


def test_snapshots_are_kept_and_survive_the_checkpoint(tmp_path):
    data = regression_data()
    model, taken = fit(TinyNet, mse, data, optimizer=ADAM, epochs=4, batch_size=16,
                       snapshot=lambda epoch, m: m.layer.weight.clone() if epoch in (1, 4) else None,
                       checkpoint=tmp_path / "m.pt")
    assert sorted(taken.snapshots) == [1, 4] and not torch.equal(taken.snapshots[1], taken.snapshots[4])
    _, cached = fit(TinyNet, mse, data, optimizer=ADAM, epochs=4, batch_size=16, checkpoint=tmp_path / "m.pt")
    assert torch.equal(cached.snapshots[4], model.layer.weight)


def test_a_schedule_steps_once_per_epoch_and_is_part_of_the_key(tmp_path):
    rates = []
    path, data = tmp_path / "m.pt", regression_data()
    halving = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)

    def optimizer(parameters):
        opt = ADAM(parameters)
        opt.register_step_post_hook(lambda o, *_: rates.append(o.param_groups[0]["lr"]))
        return opt

    fit(TinyNet, mse, data, optimizer=optimizer, schedule=halving, epochs=3, batch_size=16, checkpoint=path)
    assert rates == [0.05] * 4 + [0.025] * 4 + [0.0125] * 4  # 64 examples in batches of 16: 4 steps an epoch
    with pytest.raises(CheckpointError, match="other settings.*schedule: saved 'StepLR\\(gamma=0.5, step_size=1\\)'"):
        fit(TinyNet, mse, data, optimizer=optimizer, epochs=3, batch_size=16, checkpoint=path)


def test_describe_names_every_argument_of_a_factory():
    from helpers.training import describe

    assert describe(functools.partial(torch.optim.lr_scheduler.StepLR, 10, gamma=0.5)) == "StepLR(10, gamma=0.5)"
    assert describe(functools.partial(torch.optim.Adam, lr=1e-3)) == "Adam(lr=0.001)"
    assert describe(torch.optim.SGD) == "SGD" and describe(mse) == "mse"
    assert describe(functools.partial(torch.optim.lr_scheduler.StepLR, 20)) != describe(
        functools.partial(torch.optim.lr_scheduler.StepLR, 10))
