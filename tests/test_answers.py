"""The notebooks' answer code (exported to answers/), each formula against an independent route.

These tests are the mutation-testing suite of `make mutate`: every assertion is exact enough that a wrong sign,
a dropped term or a swapped index in an answer changes its outcome.
"""
import math

import pytest
import torch
from torch.distributions import Bernoulli, Independent, MultivariateNormal, Normal, kl_divergence

from answers import export
from answers.gan_mnist import discriminator_loss, gan_step, generator_loss, translate
from answers.kl_divergence import (
    gaussian_kl,
    gaussian_kl_full,
    js_segments,
    kl_segments,
    kl_to_standard_normal,
    wasserstein1_empirical,
)
from answers.vae import (
    elbo,
    elbo_terms,
    log_bernoulli,
    log_gaussian,
    log_likelihood,
    log_px_given_z,
    reparameterize,
    vae_loss,
)
from helpers import VAE, Discriminator, Generator

DOUBLE = torch.float64


def test_answer_modules_are_exported_from_the_notebooks():
    """answers/*.py are generated: a notebook edited without `make answers` leaves the tests on stale code."""
    stale = export.export(export.ROOT / "notebooks", export.ROOT / "answers", check=True)
    assert not stale, f"run `make answers`: {[p.name for p in stale]} differ from their notebooks"


# --- KL divergences (notebook 03) -------------------------------------------------------------------------------

def test_univariate_kl_matches_torch_at_random_parameters_and_is_asymmetric():
    g = torch.Generator().manual_seed(0)
    m1, m2 = torch.randn(200, generator=g, dtype=DOUBLE), torch.randn(200, generator=g, dtype=DOUBLE)
    s1, s2 = torch.rand(200, generator=g, dtype=DOUBLE) * 3 + 0.1, torch.rand(200, generator=g, dtype=DOUBLE) * 3 + 0.1
    expected = kl_divergence(Normal(m1, s1), Normal(m2, s2))
    assert torch.allclose(gaussian_kl(m1, s1, m2, s2), expected, rtol=1e-12, atol=0)
    assert gaussian_kl(0.0, 1.0, 0.0, 1.0) == 0
    assert abs(gaussian_kl(0.0, 1.0, 1.0, 2.0) - (math.log(2) + 2 / 8 - 0.5)) < 1e-15


@pytest.mark.parametrize("d", [1, 3, 8])
def test_full_covariance_kl_matches_torch(d):
    g = torch.Generator().manual_seed(d)
    m1, m2 = torch.randn(d, generator=g, dtype=DOUBLE), torch.randn(d, generator=g, dtype=DOUBLE)
    a, b = torch.randn(d, d, generator=g, dtype=DOUBLE), torch.randn(d, d, generator=g, dtype=DOUBLE)
    c1, c2 = a @ a.T + 0.5 * torch.eye(d, dtype=DOUBLE), b @ b.T + 0.5 * torch.eye(d, dtype=DOUBLE)
    expected = kl_divergence(MultivariateNormal(m1, c1), MultivariateNormal(m2, c2))
    assert torch.allclose(gaussian_kl_full(m1, c1, m2, c2), expected, rtol=1e-10, atol=0)


def test_kl_to_standard_normal_matches_torch_with_non_unit_variances():
    g = torch.Generator().manual_seed(1)
    mu, logvar = torch.randn(16, 6, generator=g, dtype=DOUBLE), 2 * torch.randn(16, 6, generator=g, dtype=DOUBLE)
    expected = kl_divergence(Independent(Normal(mu, (0.5 * logvar).exp()), 1),
                             Independent(Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1))
    assert torch.allclose(kl_to_standard_normal(mu, logvar), expected, rtol=1e-12, atol=1e-12)


def test_disjoint_supports_give_infinite_kl_log2_js_and_the_shift_as_w1():
    assert kl_segments(0.0, 0.5) == math.inf and kl_segments(0.3, 0.3) == 0
    assert js_segments(0.0, 0.01) == pytest.approx(math.log(2), abs=1e-15) and js_segments(1.0, 1.0) == 0
    a = torch.rand(50, 2, generator=torch.Generator().manual_seed(0), dtype=DOUBLE)
    assert abs(wasserstein1_empirical(a, a + torch.tensor([0.3, 0.4], dtype=DOUBLE)) - 0.5) < 1e-12
    assert wasserstein1_empirical(a, a.flip(0)) == 0
    # not a matching by index: a non-optimal pairing would cost more than the optimal one
    b = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=DOUBLE)
    assert wasserstein1_empirical(b, b.flip(0) + torch.tensor([0.0, 0.1], dtype=DOUBLE)) == pytest.approx(0.1)


@pytest.mark.parametrize("batch", [(4,), (2, 3)])
def test_full_covariance_kl_matches_torch_on_a_batch_of_distributions(batch):
    """Means (..., d) and covariances (..., d, d): each pair's own trace, quadratic form and log-determinants."""
    g = torch.Generator().manual_seed(len(batch))
    d = 3
    m1, m2 = torch.randn(*batch, d, generator=g, dtype=DOUBLE), torch.randn(*batch, d, generator=g, dtype=DOUBLE)
    a, b = torch.randn(*batch, d, d, generator=g, dtype=DOUBLE), torch.randn(*batch, d, d, generator=g, dtype=DOUBLE)
    c1 = a @ a.transpose(-2, -1) + 0.5 * torch.eye(d, dtype=DOUBLE)
    c2 = b @ b.transpose(-2, -1) + 0.5 * torch.eye(d, dtype=DOUBLE)
    got = gaussian_kl_full(m1, c1, m2, c2)
    assert got.shape == batch
    expected = kl_divergence(MultivariateNormal(m1, c1), MultivariateNormal(m2, c2))
    assert torch.allclose(got, expected, rtol=1e-10, atol=0)


@pytest.mark.parametrize("shape", [(6,), (3, 4, 6)])
def test_kl_to_standard_normal_sums_over_the_last_dimension_only(shape):
    """One example (d,) gives a scalar; samples x examples x d gives one KL per sample and example."""
    g = torch.Generator().manual_seed(2)
    mu, logvar = torch.randn(*shape, generator=g, dtype=DOUBLE), 2 * torch.randn(*shape, generator=g, dtype=DOUBLE)
    expected = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(-1)
    got = kl_to_standard_normal(mu, logvar)
    assert got.shape == shape[:-1] and torch.allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_w1_of_python_float_points_is_exact_by_brute_force_over_every_matching():
    """Lists of Python floats (double precision): W1 by enumerating all 6! matchings with math.dist, no torch."""
    import itertools
    import random

    rng = random.Random(0)
    a = [[rng.random(), rng.random()] for _ in range(6)]
    b = [[rng.random() + 0.5, rng.random()] for _ in range(6)]
    exact = min(sum(math.dist(a[i], b[j]) for i, j in enumerate(perm)) / 6 for perm in itertools.permutations(range(6)))
    assert abs(wasserstein1_empirical(a, b) - exact) < 1e-14
    assert abs(wasserstein1_empirical(b, a) - exact) < 1e-14


# --- the VAE (notebook 04) --------------------------------------------------------------------------------------

@pytest.fixture
def digits():
    # the grey levels and the binarisation come from different seeds: one stream for both would give u == p, all zeros
    grey = torch.rand(8, 784, generator=torch.Generator().manual_seed(10))
    return torch.bernoulli(grey, generator=torch.Generator().manual_seed(11))


def test_reparameterised_samples_have_the_encoder_mean_and_standard_deviation():
    torch.manual_seed(0)
    mu = torch.tensor([[1.0, -2.0]], dtype=DOUBLE)
    logvar = torch.tensor([[math.log(0.25), math.log(4.0)]], dtype=DOUBLE)
    z = reparameterize(mu, logvar, 200_000)[:, 0]
    assert z.shape == (200_000, 2)
    assert torch.allclose(z.mean(0), mu[0], atol=0.02)
    assert torch.allclose(z.std(0), torch.tensor([0.5, 2.0], dtype=DOUBLE), atol=0.01)
    assert reparameterize(mu, logvar).shape == mu.shape
    mu.requires_grad_(True), logvar.requires_grad_(True)
    reparameterize(mu, logvar, 3).sum().backward()
    assert mu.grad is not None and logvar.grad is not None and logvar.grad.abs().sum() > 0  # gradients reach q


def test_bernoulli_and_gaussian_likelihoods_match_torch_distributions(digits):
    torch.manual_seed(0)
    logits = 3 * torch.randn(5, 8, 784)
    expected = Independent(Bernoulli(logits=logits), 1).log_prob(digits)
    assert torch.allclose(log_bernoulli(digits, logits), expected, rtol=1e-5)
    mean = torch.rand(5, 8, 784)
    for precision in (0.5, 50.0):
        expected = Independent(Normal(mean, precision**-0.5), 1).log_prob(digits)
        assert torch.allclose(log_gaussian(digits, mean, precision), expected, rtol=1e-5)
    model = VAE(2, likelihood="gaussian", precision=50.0)
    z = torch.randn(5, 8, 2)
    expected = Independent(Normal(model.decode(z), 50.0**-0.5), 1).log_prob(digits)
    assert torch.allclose(log_px_given_z(model, digits, z), expected, rtol=1e-5)


def test_elbo_terms_are_the_sampled_reconstruction_and_the_closed_form_kl(digits):
    model = VAE(3)
    torch.manual_seed(0)
    reconstruction, kl = elbo_terms(model, digits, samples=4)
    mu, logvar = model.encode(digits)
    torch.manual_seed(0)
    eps = torch.randn(4, *mu.shape)
    by_hand = Independent(Bernoulli(logits=model.decoder(mu + (0.5 * logvar).exp() * eps)), 1).log_prob(digits).mean(0)
    assert torch.allclose(reconstruction, by_hand, rtol=1e-5)
    assert torch.allclose(kl, kl_to_standard_normal(mu, logvar))
    torch.manual_seed(0)
    assert torch.allclose(elbo(model, digits, samples=4), by_hand - kl, rtol=1e-5)
    torch.manual_seed(0)
    loss = vae_loss(model, digits)
    torch.manual_seed(0)
    assert torch.isclose(loss, (kl - elbo_terms(model, digits)[0]).mean(), rtol=1e-5)


def test_reparameterised_samples_are_exact_double_precision_draws_on_the_encoder_device():
    """z = mu + sqrt(exp(logvar)) * eps with eps the standard normal draws of mu's dtype, made on mu's device."""
    g = torch.Generator().manual_seed(3)
    mu, logvar = torch.randn(4, 3, generator=g, dtype=DOUBLE), torch.randn(4, 3, generator=g, dtype=DOUBLE)
    torch.manual_seed(5)
    z = reparameterize(mu, logvar, 7)
    torch.manual_seed(5)
    eps = torch.randn(7, 4, 3, dtype=DOUBLE)
    assert z.dtype == DOUBLE and torch.allclose(z, mu + logvar.exp().sqrt() * eps, rtol=1e-14, atol=1e-14)
    # a CUDA encoder must get CUDA noise; the meta device checks that placement without a GPU
    on_meta = mu.to("meta"), logvar.to("meta")
    assert reparameterize(*on_meta, 7).device.type == "meta" and reparameterize(*on_meta).device.type == "meta"


@pytest.mark.parametrize("shape", [(6,), (2, 3, 6)])
def test_gaussian_likelihood_sums_over_the_pixels_for_any_leading_shape(shape):
    g = torch.Generator().manual_seed(4)
    x, mean = torch.rand(*shape, generator=g, dtype=DOUBLE), torch.rand(*shape, generator=g, dtype=DOUBLE)
    expected = Normal(mean, 3.0**-0.5).log_prob(x).sum(-1)
    assert torch.allclose(log_gaussian(x, mean, 3.0), expected, rtol=1e-12, atol=0)


def test_the_elbo_and_the_loss_take_one_reparameterised_sample_by_default(digits):
    """The defaults: elbo_terms, elbo and vae_loss each draw exactly one z per example (not an average of several)."""
    model = VAE(3)
    mu, logvar = model.encode(digits)
    kl = kl_divergence(Independent(Normal(mu, (0.5 * logvar).exp()), 1),
                       Independent(Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1))
    torch.manual_seed(7)
    z = mu + logvar.exp().sqrt() * torch.randn(1, *mu.shape)
    one_sample = Independent(Bernoulli(logits=model.decoder(z)), 1).log_prob(digits)[0]
    torch.manual_seed(7)
    reconstruction, _ = elbo_terms(model, digits)
    assert torch.allclose(reconstruction, one_sample, rtol=1e-5)
    torch.manual_seed(7)
    assert torch.allclose(elbo(model, digits), one_sample - kl, rtol=1e-5)
    torch.manual_seed(7)
    assert torch.isclose(vae_loss(model, digits), (kl - one_sample).mean(), rtol=1e-5)


class LinearGaussian(torch.nn.Module):
    """p(z) = N(0, I), p(x|z) = N(W z + b, I / precision) (the decoder is linear once sigmoid undoes its logit);
    q(z|x) = N(A x, diag exp(logvar)). log p(x) is exact: N(x; b, W W^T + I / precision)."""

    def __init__(self, logvar, precision=4.0, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = 0.02 * torch.randn(6, 2, generator=g, dtype=DOUBLE)
        self.b = torch.full((6,), 0.5, dtype=DOUBLE)
        self.A, self.logvar, self.precision, self.likelihood = 0.5 * self.W.T, logvar, precision, "gaussian"
        self.decoder = lambda z: torch.logit(z @ self.W.T + self.b)

    def encode(self, x):
        return x @ self.A.T, torch.full((len(x), 2), self.logvar, dtype=DOUBLE)

    def exact_log_px(self, x):
        return MultivariateNormal(self.b, self.W @ self.W.T + torch.eye(6, dtype=DOUBLE) / self.precision).log_prob(x)


@pytest.mark.parametrize("logvar", [-0.5, 0.0, 0.5])
def test_importance_sampling_converges_to_the_exact_log_likelihood(logvar):
    """Any encoder variance gives a consistent estimate; a wrong log q or log p(z) leaves a bias of order 1."""
    model = LinearGaussian(logvar)
    x = 0.5 + 0.5 * torch.randn(5, 6, generator=torch.Generator().manual_seed(1), dtype=DOUBLE)
    torch.manual_seed(0)
    estimate = log_likelihood(model, x, k=20_000, chunk=5_000)
    assert (estimate - model.exact_log_px(x)).abs().max() < 0.02


class PriorAsPosterior(torch.nn.Module):
    """q(z|x) = p(z) = N(0, I) and a decoder that ignores z (mean 1/2): every importance weight is exactly p(x|z), so
    log p(x) = log N(x; 1/2, I) for any k. The decoder records the batch of samples it is given each time."""

    likelihood, precision = "gaussian", 1.0

    def __init__(self):
        super().__init__()
        self.batches = []

    def decoder(self, z):
        self.batches.append(z.shape[0])
        return torch.zeros(*z.shape[:-1], 6, dtype=DOUBLE)

    def encode(self, x):
        return torch.zeros(len(x), 2, dtype=DOUBLE), torch.zeros(len(x), 2, dtype=DOUBLE)


@pytest.mark.parametrize("k, chunk, batches",
                         [(None, None, [100] * 10), (250, 100, [100, 100, 50]), (300, 100, [100] * 3)])
def test_importance_sampling_draws_k_samples_in_chunks(k, chunk, batches):
    """The defaults are k = 1000 in chunks of 100; a remainder is its own last chunk; no empty chunk."""
    model = PriorAsPosterior()
    x = torch.rand(3, 6, generator=torch.Generator().manual_seed(2), dtype=DOUBLE)
    estimate = log_likelihood(model, x) if k is None else log_likelihood(model, x, k=k, chunk=chunk)
    assert model.batches == batches
    assert torch.allclose(estimate, Normal(0.5, 1.0).log_prob(x).sum(-1), rtol=1e-12, atol=1e-12)


def test_importance_sampled_log_likelihood_matches_quadrature_for_a_bernoulli_vae(digits):
    """With a 1-D latent, p(x) = integral p(x|z) N(z; 0, 1) dz on a fine grid is an independent route."""
    torch.manual_seed(0)
    model = VAE(latent_dim=1, hidden=(32,)).double()
    x = digits[:3].double()
    z = torch.linspace(-10, 10, 20001, dtype=DOUBLE)[:, None]
    with torch.no_grad():
        log_integrand = log_px_given_z(model, x, z[:, None, :].expand(-1, 3, -1)) + Normal(0.0, 1.0).log_prob(z)
    quadrature = torch.logsumexp(log_integrand, 0) + math.log(z[1, 0] - z[0, 0])
    estimate = log_likelihood(model, x, k=20000, chunk=5000)
    assert torch.allclose(estimate, quadrature, atol=0.05), (estimate, quadrature)
    with torch.no_grad():
        assert (elbo(model, x, samples=2000) < quadrature).all()


def test_the_loss_reaches_every_weight(digits):
    model = VAE(20)
    vae_loss(model, digits).backward()
    silent = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not silent, f"no gradient reaches {silent}"


# --- the GAN (notebook 06) --------------------------------------------------------------------------------------

def test_gan_losses_at_known_discriminator_outputs():
    logits_real, logits_fake = torch.tensor([2.0, -0.5]), torch.tensor([-1.0, 0.3])
    d_real, d_fake = torch.sigmoid(logits_real), torch.sigmoid(logits_fake)
    expected_d = -(torch.log(d_real).mean() + torch.log(1 - d_fake).mean())
    assert torch.isclose(discriminator_loss(logits_real, logits_fake), expected_d, rtol=1e-6)
    assert torch.isclose(generator_loss(logits_fake), -torch.log(d_fake).mean(), rtol=1e-6)


def test_the_generator_gradient_is_the_non_saturating_one():
    """d(-log D)/ds = -(1 - D) at the logit s; the minimax loss would give -D instead."""
    s = torch.tensor([-4.0, 0.0, 3.0], requires_grad=True)
    (gradient,) = torch.autograd.grad(generator_loss(s), s)
    assert torch.allclose(gradient, -(1 - torch.sigmoid(s.detach())) / 3, atol=1e-7)


def test_gan_step_draws_the_latent_batch_on_the_device_of_the_real_batch():
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
        gan_step(probe, None, None, None, torch.empty(32, 784, device="meta"))
    assert probe.z.shape == (32, 4) and probe.z.device.type == "meta"


@pytest.mark.parametrize("max_shift", [None, 1])
def test_gan_step_updates_the_discriminator_then_the_generator(max_shift):
    torch.manual_seed(0)
    generator, discriminator = Generator(latent_dim=4, hidden=(16,)), Discriminator(hidden=(16,), dropout=0.0)
    opt_g = torch.optim.SGD(generator.parameters(), lr=0.1)
    opt_d = torch.optim.SGD(discriminator.parameters(), lr=0.1)
    real = torch.rand(32, 784) * 2 - 1
    before_g = [p.clone() for p in generator.parameters()]
    torch.manual_seed(1)
    if max_shift is None:  # the default shift, 2 pixels
        stats, max_shift = gan_step(generator, discriminator, opt_g, opt_d, real), 2
    else:
        stats = gan_step(generator, discriminator, opt_g, opt_d, real, max_shift=max_shift)
    assert stats.shape == (4,) and 0 < stats[2] < 1 and 0 < stats[3] < 1
    assert any(not torch.equal(a, b) for a, b in zip(before_g, generator.parameters()))
    # replay: D's step must come from discriminator_loss on D's own output of translated images, G's from
    # generator_loss after it, D reading a fresh translation of the same generated images
    torch.manual_seed(0)
    g2, d2 = Generator(latent_dim=4, hidden=(16,)), Discriminator(hidden=(16,), dropout=0.0)
    torch.manual_seed(1)
    z = torch.randn(32, 4)
    fake = g2(z)
    loss_d = discriminator_loss(d2(translate(real, max_shift)), d2(translate(fake.detach(), max_shift)))
    assert torch.isclose(stats[0], loss_d, rtol=1e-5)
    grads = torch.autograd.grad(loss_d, list(d2.parameters()))
    with torch.no_grad():
        for p, grad in zip(d2.parameters(), grads):
            p -= 0.1 * grad
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(d2.parameters(), discriminator.parameters()))
    assert torch.isclose(stats[1], generator_loss(d2(translate(fake, max_shift))), rtol=1e-5)



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
    seen = []
    for picture in moved.detach():
        matches = [(dy, dx) for dy in offsets for dx in offsets if torch.equal(picture, shifted(image, dy, dx))]
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
