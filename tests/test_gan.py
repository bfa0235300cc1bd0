"""The GAN's players in helpers: images in the unit interval, and a generator that reloads from its checkpoint."""
import torch

from helpers import ConvGenerator, Generator, load_model, save_checkpoint


def test_pixels_maps_tanh_outputs_to_the_unit_interval():
    generator = Generator(latent_dim=4, hidden=(8,)).eval()
    z = torch.randn(3, 4)
    assert torch.allclose(generator.pixels(z), (generator(z) + 1) / 2)


def test_conv_generator_makes_images_in_the_unit_interval_and_reloads(tmp_path):
    torch.manual_seed(0)
    generator = ConvGenerator(latent_dim=8, channels=(8, 4)).eval()
    images = generator.sample(5, rng=torch.Generator().manual_seed(0))
    assert images.shape == (5, 784) and 0 <= images.min() and images.max() <= 1
    save_checkpoint(tmp_path / "g.pt", generator)
    again = load_model(tmp_path / "g.pt")
    assert torch.equal(again.sample(5, rng=torch.Generator().manual_seed(0)), images)


def test_sampling_leaves_the_training_mode_and_the_batch_statistics_alone():
    """sample() decodes in eval mode, so one sample does not depend on the others, and restores the mode after."""
    torch.manual_seed(0)
    generator = ConvGenerator(latent_dim=8, channels=(8, 4)).train()
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    many = generator.sample(20, rng=torch.Generator().manual_seed(3))
    assert generator.training and all(torch.equal(v, generator.state_dict()[k]) for k, v in before.items())
    z = torch.randn(20, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(many, generator.eval().pixels(z))
