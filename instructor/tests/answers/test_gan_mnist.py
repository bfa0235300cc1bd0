"""The answers of notebook 06 (answers/gan_mnist.py), each against an independent route.

Part of the mutation-testing suite of `make mutate`: every assertion is exact enough that a wrong sign, a swapped label,
a missing detach or a skipped translation in an answer changes its outcome.
"""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli

from answers.gan_mnist import discriminator_loss, gan_step, generator_loss, translate
from helpers import ConvGenerator, Discriminator, Generator

DOUBLE = torch.float64


# --- the two losses -------------------------------------------------------------------------------------------------

def test_gan_losses_are_minus_the_players_objectives_at_random_logits():
    """Batches of different sizes, double precision: D's loss is the sum of two batch means, G's the non-saturating
    one."""
    g = torch.Generator().manual_seed(0)
    logits_real = 3 * torch.randn(40, generator=g, dtype=DOUBLE)
    logits_fake = 3 * torch.randn(25, generator=g, dtype=DOUBLE)
    d_real, d_fake = torch.sigmoid(logits_real), torch.sigmoid(logits_fake)
    expected_d = -(torch.log(d_real).mean() + torch.log(1 - d_fake).mean())
    got_d, got_g = discriminator_loss(logits_real, logits_fake), generator_loss(logits_fake)
    assert got_d.shape == () and got_g.shape == ()
    assert torch.allclose(got_d, expected_d, rtol=1e-12, atol=0)
    assert torch.allclose(got_g, -torch.log(d_fake).mean(), rtol=1e-12, atol=0)


def test_gan_losses_at_known_discriminator_outputs():
    logits_real, logits_fake = torch.tensor([2.0, -0.5]), torch.tensor([-1.0, 0.3])
    d_real, d_fake = torch.sigmoid(logits_real), torch.sigmoid(logits_fake)
    expected_d = -(torch.log(d_real).mean() + torch.log(1 - d_fake).mean())
    assert torch.isclose(discriminator_loss(logits_real, logits_fake), expected_d, rtol=1e-6)
    assert torch.isclose(generator_loss(logits_fake), -torch.log(d_fake).mean(), rtol=1e-6)
    # at D = 1/2 everywhere, the equilibrium, D's loss is log 4
    assert torch.isclose(discriminator_loss(torch.zeros(3), torch.zeros(5)), torch.log(torch.tensor(4.0)), rtol=1e-7)


def test_the_generator_gradient_is_the_non_saturating_one():
    """d(-log D)/ds = -(1 - D) at the logit s; the minimax loss would give -D instead."""
    s = torch.tensor([-4.0, 0.0, 3.0], requires_grad=True)
    (gradient,) = torch.autograd.grad(generator_loss(s), s)
    assert torch.allclose(gradient, -(1 - torch.sigmoid(s.detach())) / 3, atol=1e-7)


def test_gan_losses_stay_exact_in_float32_where_the_discriminator_is_confident():
    """sigmoid rounds to 1 above a logit of 17 and to 0 below -89 in float32: the losses must not take its log."""
    confident = torch.tensor([-120.0, -40.0, 20.0, 60.0])
    bernoulli = Bernoulli(logits=confident.double())
    ones, zeros = torch.ones(4, dtype=DOUBLE), torch.zeros(4, dtype=DOUBLE)
    got_g, got_d = generator_loss(confident), discriminator_loss(-confident, confident)
    assert got_g.dtype == torch.float32 and torch.isfinite(got_g) and torch.isfinite(got_d)
    assert torch.isclose(got_g.double(), -bernoulli.log_prob(ones).mean(), rtol=1e-6)
    expected_d = -(Bernoulli(logits=-confident.double()).log_prob(ones).mean() + bernoulli.log_prob(zeros).mean())
    assert torch.isclose(got_d.double(), expected_d, rtol=1e-6)


# --- one step -------------------------------------------------------------------------------------------------------

def test_gan_step_draws_the_latent_batch_on_the_device_and_in_the_dtype_of_the_real_batch():
    """z has one row per real image and lives where the batch does (the meta device stands in for a GPU)."""

    class Stop(Exception):
        pass

    class Probe(torch.nn.Module):
        latent_dim = 4

        def forward(self, z):
            self.z = z
            raise Stop

    probe = Probe()
    with pytest.raises(Stop):
        gan_step(probe, None, None, None, torch.empty(32, 784, device="meta", dtype=DOUBLE))
    assert probe.z.shape == (32, 4) and probe.z.device.type == "meta" and probe.z.dtype == DOUBLE


def small_players(seed=0):
    torch.manual_seed(seed)
    return Generator(latent_dim=4, hidden=(16,)).double(), Discriminator(hidden=(16,), dropout=0.0).double()


def parameters(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("max_shift", [None, 1])
def test_gan_step_updates_the_discriminator_then_the_generator(max_shift):
    """An autograd replay in float64 with stale gradients: D's SGD step from discriminator_loss on translated real and
    detached generated images, then G's from generator_loss through the updated D on a fresh translation."""
    generator, discriminator = small_players()
    replay_g, replay_d = copy.deepcopy(generator), copy.deepcopy(discriminator)
    for p in [*generator.parameters(), *discriminator.parameters()]:
        p.grad = torch.ones_like(p)                     # left by an earlier step: each update must clear its own
    opt_g = torch.optim.SGD(generator.parameters(), lr=0.07)
    opt_d = torch.optim.SGD(discriminator.parameters(), lr=0.03)
    real = torch.rand(32, 784, generator=torch.Generator().manual_seed(9), dtype=DOUBLE) * 2 - 1
    torch.manual_seed(1)
    if max_shift is None:  # the default shift, 2 pixels
        stats, max_shift = gan_step(generator, discriminator, opt_g, opt_d, real), 2
    else:
        stats = gan_step(generator, discriminator, opt_g, opt_d, real, max_shift=max_shift)
    assert stats.shape == (4,) and 0 < stats[2] < 1 and 0 < stats[3] < 1

    torch.manual_seed(1)
    z = torch.randn(32, 4, dtype=DOUBLE)
    fake = replay_g(z)
    logits_real, logits_fake = replay_d(translate(real, max_shift)), replay_d(translate(fake.detach(), max_shift))
    loss_d = discriminator_loss(logits_real, logits_fake)
    with torch.no_grad():
        for p, grad in zip(replay_d.parameters(), torch.autograd.grad(loss_d, list(replay_d.parameters()))):
            p -= 0.03 * grad
    loss_g = generator_loss(replay_d(translate(fake, max_shift)))
    with torch.no_grad():
        for p, grad in zip(replay_g.parameters(), torch.autograd.grad(loss_g, list(replay_g.parameters()))):
            p -= 0.07 * grad
    assert torch.allclose(parameters(discriminator), parameters(replay_d), rtol=1e-12, atol=1e-14)
    assert torch.allclose(parameters(generator), parameters(replay_g), rtol=1e-12, atol=1e-14)
    expected = torch.stack([loss_d, loss_g, torch.sigmoid(logits_real).mean(), torch.sigmoid(logits_fake).mean()])
    assert torch.allclose(stats, expected.detach(), rtol=1e-12, atol=1e-14)


def test_the_discriminator_update_leaves_the_generator_alone():
    """With G's learning rate 0, the step changes D only; with D's 0, G moves through the unchanged D."""
    generator, discriminator = small_players(2)
    start_g, start_d = parameters(generator), parameters(discriminator)
    real = torch.rand(16, 784, generator=torch.Generator().manual_seed(3), dtype=DOUBLE) * 2 - 1
    gan_step(generator, discriminator, torch.optim.SGD(generator.parameters(), lr=0.0),
             torch.optim.SGD(discriminator.parameters(), lr=0.1), real)
    assert torch.equal(parameters(generator), start_g) and not torch.equal(parameters(discriminator), start_d)
    generator, discriminator = small_players(2)
    gan_step(generator, discriminator, torch.optim.SGD(generator.parameters(), lr=0.1),
             torch.optim.SGD(discriminator.parameters(), lr=0.0), real)
    assert torch.equal(parameters(discriminator), start_d) and not torch.equal(parameters(generator), start_g)


def test_the_discriminator_reads_only_translated_images_in_both_updates():
    """Every batch D reads is shifted: no more than a few of its rows (the zero offset, 1 in 25) are a real or a
    generated image as it was given."""
    generator, discriminator = small_players(4)
    seen, made = [], []
    discriminator.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].detach().clone()))
    generator.register_forward_hook(lambda module, inputs, output: made.append(output.detach().clone()))
    real = torch.rand(50, 784, generator=torch.Generator().manual_seed(5), dtype=DOUBLE) * 2 - 1
    torch.manual_seed(6)
    gan_step(generator, discriminator, torch.optim.SGD(generator.parameters(), lr=0.1),
             torch.optim.SGD(discriminator.parameters(), lr=0.1), real)
    given = torch.cat([real, *made])
    rows = torch.cat(seen)
    assert len(rows) == 150, "D reads the real batch, then the generated one in each update"
    as_given = (rows[:, None, :] == given[None]).all(-1).any(1).float().mean()
    assert as_given < 0.2


def test_a_seeded_step_repeats_exactly():
    """What a rerun of the training cell relies on: the same seed, the same players, the same step."""
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        generator, discriminator = ConvGenerator(latent_dim=8, channels=(8, 4)), Discriminator(hidden=(32,))
        opt_g = torch.optim.Adam(generator.parameters(), 2e-4, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(discriminator.parameters(), 2e-4, betas=(0.5, 0.999))
        real = torch.rand(16, 784, generator=torch.Generator().manual_seed(1)) * 2 - 1
        stats = torch.stack([gan_step(generator, discriminator, opt_g, opt_d, real) for _ in range(3)])
        results.append((stats, parameters(generator), parameters(discriminator)))
    assert all(torch.equal(a, b) for a, b in zip(*results))


# --- the translation (given, and checked here because the step relies on it) ----------------------------------------

def shifted(image, dy, dx):
    """A 28 x 28 image moved dy pixels down and dx right, the uncovered border filled with background (-1)."""
    out = torch.full_like(image, -1.0)
    out[max(dy, 0):28 + min(dy, 0), max(dx, 0):28 + min(dx, 0)] = \
        image[max(-dy, 0):28 + min(-dy, 0), max(-dx, 0):28 + min(-dx, 0)]
    return out


@pytest.mark.parametrize("max_shift", [1, None, 20])
def test_translate_moves_each_image_by_a_whole_pixel_offset_and_fills_background(max_shift):
    image = torch.rand(28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1   # ink up to the edges
    batch = image.reshape(1, 784).repeat(300, 1).requires_grad_(True)
    torch.manual_seed(0)
    moved = translate(batch) if max_shift is None else translate(batch, max_shift)
    max_shift = max_shift or 2  # the default: DiffAugment's translation, the notebook's setting
    assert moved.shape == (300, 784), "flat images in, flat images out"
    moved = moved.reshape(300, 28, 28)
    assert torch.equal(batch.detach(), image.reshape(1, 784).repeat(300, 1)), "translate must not change its input"
    offsets = range(-max_shift, max_shift + 1)
    candidates = [(dy, dx) for dy in offsets for dx in offsets]
    every_shift = torch.stack([shifted(image, dy, dx) for dy, dx in candidates])
    seen = []
    for picture in moved.detach():
        matches = [candidates[i] for i in (every_shift == picture).flatten(1).all(1).nonzero().flatten().tolist()]
        assert len(matches) == 1, "each image must be an exact whole-pixel shift, its border background (-1)"
        seen.append(matches[0])
    if max_shift <= 2:  # 300 draws show every one of the 9 or 25 offsets
        assert set(seen) == {(dy, dx) for dy in offsets for dx in offsets}, "every offset in [-max_shift, max_shift]^2"
    else:  # a wrong scale (a sampling point k * 28/29 pixels away, say) rounds to another pixel only for large k
        assert max(abs(dy) for dy, _ in seen) == max(abs(dx) for _, dx in seen) == max_shift
    assert len(set(seen[:20])) > 5, "each image draws its own offset"
    moved.sum().backward()
    for grad, (dy, dx) in zip(batch.grad.reshape(300, 28, 28)[:25], seen):
        # each output pixel copies one input pixel: the pixels still in the frame get a gradient of 1, the rest 0
        kept = torch.zeros(28, 28)
        kept[max(-dy, 0):28 + min(-dy, 0), max(-dx, 0):28 + min(-dx, 0)] = 1
        assert torch.equal(grad, kept)


def test_translate_keeps_double_precision_and_is_the_identity_without_a_shift():
    images = torch.rand(6, 784, generator=torch.Generator().manual_seed(1), dtype=DOUBLE) * 2 - 1
    moved = translate(images, 0)
    assert moved.dtype == DOUBLE and torch.equal(moved, images)
    assert F.mse_loss(translate(images, 2), images) > 0
