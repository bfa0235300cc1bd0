import pytest
import torch

from helpers import CheckpointError
from helpers.gan import Discriminator, Generator, train_gan


def test_train_gan_records_history_and_caches_the_generator(tmp_path):
    torch.manual_seed(0)
    images = torch.rand(128, 784)
    generator = Generator(latent_dim=8, hidden=(32,))
    history = train_gan(generator, Discriminator(hidden=(32,)), images, epochs=2, batch_size=32,
                        snapshot=lambda epoch, g: g.sample(4) if epoch == 2 else None,
                        checkpoint=tmp_path / "g.pt", settings={"epochs": 2})
    assert len(history.loss_d) == 2 and 0 < history.d_real[-1] < 1 and list(history.snapshots) == [2]
    samples = generator.sample(5, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (5, 784) and 0 <= samples.min() and samples.max() <= 1

    again = Generator(latent_dim=8, hidden=(32,))
    cached = train_gan(again, Discriminator(hidden=(32,)), images, epochs=2, checkpoint=tmp_path / "g.pt",
                       settings={"epochs": 2})
    assert cached.from_checkpoint and cached.loss_g == history.loss_g
    assert not again.training  # a loaded generator must not update its batch-norm statistics when used
    assert torch.equal(again.sample(5, generator=torch.Generator().manual_seed(0)), samples)
    with pytest.raises(CheckpointError, match="other settings"):
        train_gan(Generator(latent_dim=8, hidden=(32,)), Discriminator(hidden=(32,)), images, epochs=3,
                  checkpoint=tmp_path / "g.pt", settings={"epochs": 3})
