"""The GAN's training loop (helpers.fit_gan) with the notebook's step, and its checkpoint key."""
import functools

import pytest
import torch

from answers.gan_mnist import gan_step
from helpers import (
    CheckpointError,
    ConvGenerator,
    Discriminator,
    Generator,
    fit_gan,
    load_model,
    save_checkpoint,
    seeded,
)


def train(tmp_path, epochs=2, dropout=0.3, **extra):
    images = torch.rand(128, 784, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return fit_gan(lambda: Generator(latent_dim=8, hidden=(32,)), lambda: Discriminator(hidden=(32,), dropout=dropout),
                   gan_step, images, optimizer=functools.partial(torch.optim.Adam, lr=2e-4, betas=(0.5, 0.999)),
                   epochs=epochs, batch_size=32, checkpoint=tmp_path / "g.pt", settings={"data": "random"}, **extra)


def test_fit_gan_records_history_and_caches_the_generator(tmp_path):
    generator, history = train(tmp_path, snapshot=lambda epoch, g: g.sample(4) if epoch == 2 else None)
    assert len(history.loss_d) == 2 and 0 < history.d_real[-1] < 1 and list(history.snapshots) == [2]
    samples = generator.sample(5, rng=torch.Generator().manual_seed(0))
    assert samples.shape == (5, 784) and 0 <= samples.min() and samples.max() <= 1
    again, cached = train(tmp_path)
    assert cached.from_checkpoint and cached.loss_g == history.loss_g
    assert not again.training  # a loaded generator must not update its batch-norm statistics when used
    assert torch.equal(again.sample(5, rng=torch.Generator().manual_seed(0)), samples)


def test_a_rerun_trains_exactly_what_a_clean_run_trains(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    torch.rand(1000)  # whatever ran before must not matter: fit_gan seeds its players itself
    first, _ = train(tmp_path / "a")
    second, _ = train(tmp_path / "b")
    assert all(torch.equal(p, q) for p, q in zip(first.state_dict().values(), second.state_dict().values()))


def test_changed_epochs_or_discriminator_invalidate_the_checkpoint(tmp_path):
    train(tmp_path)
    with pytest.raises(CheckpointError, match="other settings.*epochs: saved 2, asked 3"):
        train(tmp_path, epochs=3)
    with pytest.raises(CheckpointError, match="other settings.*discriminator"):
        train(tmp_path, dropout=0.5)  # a changed default of the discriminator changes the trained generator


def test_pixels_maps_tanh_outputs_to_the_unit_interval():
    generator = Generator(latent_dim=4, hidden=(8,)).eval()
    z = torch.randn(3, 4)
    assert torch.allclose(generator.pixels(z), (generator(z) + 1) / 2)


def test_the_kept_generator_is_the_moving_average_of_the_trained_one(tmp_path):
    """A step that adds 1 to every generator weight: the average after t steps is known in closed form."""
    images = torch.zeros(64, 784)

    def plus_one(generator, discriminator, opt_g, opt_d, real):
        with torch.no_grad():
            for p in generator.parameters():
                p.add_(1.0)
        return torch.zeros(4)

    def make():
        return Generator(latent_dim=2, hidden=(4,))

    start = seeded(make, 0, "cpu")
    decay, steps = 0.9, 2 * 64 // 16
    generator, history = fit_gan(make, lambda: Discriminator(hidden=(4,)), plus_one, images, optimizer=torch.optim.SGD,
                                 epochs=2, batch_size=16, ema_decay=decay, checkpoint=tmp_path / "g.pt",
                                 snapshot=lambda epoch, g: next(g.parameters()).clone())
    # AveragedModel copies the weights at the first update (after step 1), then averages: e_t = d e_(t-1) + (1-d) w_t
    average = 1.0
    for t in range(2, steps + 1):
        average = decay * average + (1 - decay) * t
    for p0, p in zip(start.parameters(), generator.parameters()):
        assert torch.allclose(p, p0 + average), "the returned generator must be the average, not the last weights"
    assert torch.allclose(history.snapshots[2], next(generator.parameters())), "snapshots must see the average"
    reloaded, cached = fit_gan(make, lambda: Discriminator(hidden=(4,)), plus_one, images, optimizer=torch.optim.SGD,
                               epochs=2, batch_size=16, ema_decay=decay, checkpoint=tmp_path / "g.pt")
    assert cached.from_checkpoint and all(torch.equal(a, b) for a, b in zip(reloaded.parameters(),
                                                                            generator.parameters()))
    with pytest.raises(CheckpointError, match="other settings.*ema_decay: saved 0.9, asked None"):
        fit_gan(make, lambda: Discriminator(hidden=(4,)), plus_one, images, optimizer=torch.optim.SGD, epochs=2,
                batch_size=16, checkpoint=tmp_path / "g.pt")


def test_conv_generator_makes_images_in_the_unit_interval_and_reloads(tmp_path):
    generator = seeded(lambda: ConvGenerator(latent_dim=8, channels=(8, 4)), 0, "cpu").eval()
    images = generator.sample(5, rng=torch.Generator().manual_seed(0))
    assert images.shape == (5, 784) and 0 <= images.min() and images.max() <= 1
    save_checkpoint(tmp_path / "g.pt", generator)
    again = load_model(tmp_path / "g.pt")
    assert torch.equal(again.sample(5, rng=torch.Generator().manual_seed(0)), images)
