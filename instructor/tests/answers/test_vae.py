"""The answers of notebook 04 (answers/vae.py), each formula against an independent route.

Part of the mutation-testing suite of `make mutate`: every assertion is exact enough that a wrong sign, a dropped term
or a swapped index in an answer changes its outcome.
"""
import math

import numpy as np
import pytest
import torch
from torch.distributions import Bernoulli, Independent, MultivariateNormal, Normal, kl_divergence

from answers.kl_divergence import kl_to_standard_normal
from answers.vae import (
    elbo,
    elbo_estimates,
    elbo_terms,
    fit_q,
    interpolate,
    latent_grid,
    log_bernoulli,
    log_gaussian,
    log_likelihood,
    log_prior,
    log_px_given_z,
    log_q,
    ml_precision,
    reparameterised_gradient,
    reparameterize,
    score_function_gradient,
    vae_loss,
)
from helpers import VAE

DOUBLE = torch.float64


@pytest.fixture
def digits():
    # the grey levels and the binarisation come from different seeds: one stream for both would give u == p, all zeros
    grey = torch.rand(8, 784, generator=torch.Generator().manual_seed(10))
    return torch.bernoulli(grey, generator=torch.Generator().manual_seed(11))


# --- B1, C1a, A6: the log densities -----------------------------------------------------------------------------

@pytest.mark.parametrize("d", [1, 2, 5])
def test_the_gaussian_log_densities_match_torch_for_any_dimension_and_broadcast(d):
    g = torch.Generator().manual_seed(d)
    z = 2 * torch.randn(3, 4, d, generator=g, dtype=DOUBLE)
    mu, logvar = torch.randn(4, d, generator=g, dtype=DOUBLE), 2 * torch.randn(4, d, generator=g, dtype=DOUBLE)
    assert torch.allclose(log_prior(z), Independent(Normal(torch.zeros(d, dtype=DOUBLE), 1.0), 1).log_prob(z),
                          rtol=1e-13, atol=0)
    expected = Independent(Normal(mu, (0.5 * logvar).exp()), 1).log_prob(z)
    assert log_q(z, mu, logvar).shape == (3, 4) and torch.allclose(log_q(z, mu, logvar), expected, rtol=1e-12, atol=0)


def test_log_bernoulli_matches_torch_and_stays_finite_where_the_sigmoid_rounds(digits):
    torch.manual_seed(0)
    logits = 3 * torch.randn(5, 8, 784, dtype=DOUBLE)
    expected = Independent(Bernoulli(logits=logits), 1).log_prob(digits.double())
    assert torch.allclose(log_bernoulli(digits.double(), logits), expected, rtol=1e-12, atol=0)
    extreme = 60 * torch.sign(torch.randn(8, 784))          # sigmoid(+-60) is exactly 1 or 0 in float32
    got = log_bernoulli(digits, extreme)
    assert torch.isfinite(got).all()
    assert torch.allclose(got, Independent(Bernoulli(logits=extreme), 1).log_prob(digits), rtol=1e-5)


@pytest.mark.parametrize("shape", [(6,), (2, 3, 6)])
def test_gaussian_likelihood_sums_over_the_pixels_for_any_leading_shape(shape):
    g = torch.Generator().manual_seed(4)
    x, mean = torch.rand(*shape, generator=g, dtype=DOUBLE), torch.rand(*shape, generator=g, dtype=DOUBLE)
    for precision in (0.5, 3.0, 50.0):
        expected = Normal(mean, precision**-0.5).log_prob(x).sum(-1)
        assert torch.allclose(log_gaussian(x, mean, precision), expected, rtol=1e-12, atol=0)


def test_log_px_given_z_uses_the_decoder_and_its_likelihood(digits):
    torch.manual_seed(0)
    bernoulli, gaussian = VAE(2), VAE(2, likelihood="gaussian", precision=50.0)
    z = torch.randn(5, 8, 2)
    expected = Independent(Bernoulli(logits=bernoulli.decoder(z)), 1).log_prob(digits)
    assert torch.allclose(log_px_given_z(bernoulli, digits, z), expected, rtol=1e-5)
    expected = Independent(Normal(gaussian.decode(z), 50.0**-0.5), 1).log_prob(digits)
    assert torch.allclose(log_px_given_z(gaussian, digits, z), expected, rtol=1e-5)


def test_the_maximum_likelihood_precision_is_where_the_log_likelihood_peaks():
    g = torch.Generator().manual_seed(5)
    x, mean = torch.rand(6, 30, generator=g, dtype=DOUBLE), torch.rand(3, 6, 30, generator=g, dtype=DOUBLE)
    best = ml_precision(x, mean)
    precision = torch.tensor(best, dtype=DOUBLE, requires_grad=True)
    total = (0.5 * 30 * torch.log(precision / (2 * math.pi)) - 0.5 * precision * (x - mean).square().sum(-1)).sum()
    (slope,) = torch.autograd.grad(total, precision)
    assert abs(slope.item()) < 1e-9 * abs(total.item())
    assert best == pytest.approx(30 / (x - mean).square().sum(-1).mean().item(), rel=1e-12)


# --- B2: the reparameterisation and the ELBO --------------------------------------------------------------------

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


def test_elbo_terms_are_the_sampled_reconstruction_and_the_closed_form_kl(digits):
    model = VAE(3)
    torch.manual_seed(0)
    reconstruction, kl = elbo_terms(model, digits, samples=4)
    mu, logvar = model.encode(digits)
    torch.manual_seed(0)
    eps = torch.randn(4, *mu.shape)
    by_hand = Independent(Bernoulli(logits=model.decoder(mu + (0.5 * logvar).exp() * eps)), 1).log_prob(digits).mean(0)
    assert torch.allclose(reconstruction, by_hand, rtol=1e-5)
    assert torch.allclose(kl, kl_divergence(Independent(Normal(mu, (0.5 * logvar).exp()), 1),
                                            Independent(Normal(torch.zeros_like(mu), 1.0), 1)), rtol=1e-5)
    torch.manual_seed(0)
    assert torch.allclose(elbo(model, digits, samples=4), by_hand - kl, rtol=1e-5)


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


def test_the_loss_reaches_every_weight(digits):
    model = VAE(20)
    vae_loss(model, digits).backward()
    silent = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not silent, f"no gradient reaches {silent}"


def test_the_fixed_variance_elbo_uses_q_of_variance_one_hundredth(digits):
    """Model B: the KL is that of N(g(x), 0.01 I), whose only encoder-dependent part is |g(x)|^2 / 2."""
    model = VAE(2, fixed_std=0.1)
    g_x, _ = model.encode(digits)
    _, kl = elbo_terms(model, digits)
    expected = 0.5 * (2 * 0.01 + g_x.square().sum(-1) - 2 * math.log(0.01) - 2)
    assert torch.allclose(kl, expected, rtol=1e-5)


# --- A8: the gradient estimators --------------------------------------------------------------------------------

def test_the_single_draw_estimates_match_autograd_and_average_to_the_exact_gradient():
    mu, sigma = 0.7, 0.4
    eps = torch.randn(200_000, generator=torch.Generator().manual_seed(0), dtype=DOUBLE)
    z = mu + sigma * eps

    def h(t):
        return torch.sin(2 * t) + t**3

    m = torch.full_like(z[:50], mu, requires_grad=True)
    s = torch.full_like(z[:50], sigma, requires_grad=True)
    score = torch.stack(torch.autograd.grad((h(z[:50]) * Normal(m, s).log_prob(z[:50])).sum(), (m, s)))
    assert torch.allclose(score_function_gradient(h, mu, sigma, z[:50]), score, rtol=1e-12, atol=1e-12)
    m2, s2 = m.detach().clone().requires_grad_(True), s.detach().clone().requires_grad_(True)
    reparameterised = torch.stack(torch.autograd.grad(h(m2 + s2 * eps[:50]).sum(), (m2, s2)))
    assert torch.allclose(reparameterised_gradient(h, mu, sigma, eps[:50]), reparameterised, rtol=1e-12, atol=1e-12)
    # E h(z) = sin(2 mu) exp(-2 sigma^2) + mu^3 + 3 mu sigma^2
    exact = torch.tensor([2 * math.cos(2 * mu) * math.exp(-2 * sigma**2) + 3 * mu**2 + 3 * sigma**2,
                          -4 * sigma * math.sin(2 * mu) * math.exp(-2 * sigma**2) + 6 * mu * sigma], dtype=DOUBLE)
    for estimates in (score_function_gradient(h, mu, sigma, z), reparameterised_gradient(h, mu, sigma, eps)):
        assert estimates.shape == (2, 200_000)
        assert ((estimates.mean(1) - exact).abs() < 5 * estimates.std(1) / 200_000**0.5).all()


# --- C2: the importance-sampled log-likelihood ------------------------------------------------------------------

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


# --- C1e: two ELBO estimates ------------------------------------------------------------------------------------

def test_the_two_estimates_share_their_draws_and_differ_by_the_kl(digits):
    model = VAE(3).double()
    x = digits.double()
    torch.manual_seed(1)
    closed, sampled = elbo_estimates(model, x, 6)
    mu, logvar = model.encode(x)
    torch.manual_seed(1)
    z = mu + (0.5 * logvar).exp() * torch.randn(6, *mu.shape, dtype=DOUBLE)
    reconstruction = Independent(Bernoulli(logits=model.decoder(z)), 1).log_prob(x)
    q = Independent(Normal(mu, (0.5 * logvar).exp()), 1)
    prior = Independent(Normal(torch.zeros_like(mu), 1.0), 1)
    assert torch.allclose(closed, reconstruction - kl_divergence(q, prior), rtol=1e-10)
    assert torch.allclose(sampled, reconstruction + prior.log_prob(z) - q.log_prob(z), rtol=1e-10)


# --- B7, B8: interpolation and the grid -------------------------------------------------------------------------

def test_interpolation_decodes_the_segment_between_the_encoder_means(digits):
    torch.manual_seed(2)
    model = VAE(4).eval()
    path = interpolate(model, digits[0], digits[1], 5)
    with torch.no_grad():
        ends = model.encode(digits[:2])[0]
        expected = model.decode(torch.stack([ends[0] + t * (ends[1] - ends[0]) for t in (0, 0.25, 0.5, 0.75, 1)]))
    assert path.shape == (5, 784) and torch.allclose(path, expected, atol=1e-6)
    assert interpolate(model, digits[0], digits[1]).shape == (10, 784), "the signature's default is 10 images"


@pytest.mark.parametrize("n", [2, 5, 20])
def test_the_grid_holds_equal_prior_mass_per_cell_row_by_row_from_the_top(n):
    grid = latent_grid(n).double().reshape(n, n, 2)
    probabilities = Normal(0.0, 1.0).cdf(grid)
    centres = (torch.arange(n, dtype=DOUBLE) + 0.5) / n
    assert torch.allclose(probabilities[0, :, 0], centres, atol=1e-6)          # z_1 left to right along each row
    assert torch.allclose(probabilities[:, 0, 1], centres.flip(0), atol=1e-6)  # z_2 from the top down
    assert torch.equal(grid[:, :, 0], grid[:1, :, 0].expand(n, n))               # a grid: z_1 constant down columns
    assert torch.equal(grid[:, :, 1], grid[:, :1, 1].expand(n, n))               # and z_2 constant along rows


# --- B10: stochastic variational inference ----------------------------------------------------------------------

class LinearDecoder(torch.nn.Module):
    """A Bernoulli decoder with logits z W + c and a 2-D latent."""

    def __init__(self, seed=0, pixels=16):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = torch.nn.Parameter(2 * torch.randn(2, pixels, generator=g, dtype=DOUBLE))
        self.c = torch.nn.Parameter(0.5 * torch.randn(pixels, generator=g, dtype=DOUBLE))
        self.likelihood = "bernoulli"

    def decoder(self, z):
        return z @ self.W + self.c


def observed_elbo_by_quadrature(model, x, observed, mu, logvar, nodes=40):
    """The ELBO of the observed pixels under q = N(mu, diag exp(logvar)) in 2-D, by Gauss-Hermite quadrature."""
    points, weights = (torch.as_tensor(a, dtype=DOUBLE) for a in np.polynomial.hermite.hermgauss(nodes))
    t1, t2 = torch.meshgrid(points, points, indexing="ij")
    z = mu + (0.5 * logvar).exp() * math.sqrt(2) * torch.stack([t1.reshape(-1), t2.reshape(-1)], 1)[:, None, :]
    mass = (weights[:, None] * weights[None, :]).reshape(-1) / math.pi
    with torch.no_grad():
        likelihood = Independent(Bernoulli(logits=model.decoder(z)[..., observed]), 1).log_prob(x[:, observed])
    return (mass[:, None] * likelihood).sum(0) - kl_to_standard_normal(mu, logvar)


def test_svi_reaches_the_best_diagonal_gaussian_of_the_observed_pixels_and_leaves_the_model_alone():
    model = LinearDecoder()
    g = torch.Generator().manual_seed(1)
    x = torch.bernoulli(torch.full((3, 16), 0.4, dtype=DOUBLE), generator=g)
    observed = torch.arange(16) % 2 == 0
    weights = [p.detach().clone() for p in model.parameters()]
    start = torch.zeros(3, 2, dtype=DOUBLE)
    torch.manual_seed(0)
    mu, logvar = fit_q(model, x, observed, start, start, steps=300, samples=8, lr=0.05)
    mu, logvar = fit_q(model, x, observed, mu, logvar, steps=300, samples=16, lr=0.01)
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters()))
    assert all(p.requires_grad for p in model.parameters()) and torch.equal(start, torch.zeros(3, 2, dtype=DOUBLE))
    # the optimum over diagonal Gaussians, by L-BFGS on the quadrature ELBO
    best_mu = torch.zeros(3, 2, dtype=DOUBLE, requires_grad=True)
    best_logvar = torch.zeros(3, 2, dtype=DOUBLE, requires_grad=True)
    optimizer = torch.optim.LBFGS([best_mu, best_logvar], max_iter=500, tolerance_grad=1e-12,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        points, weights_ = (torch.as_tensor(a, dtype=DOUBLE) for a in np.polynomial.hermite.hermgauss(40))
        t1, t2 = torch.meshgrid(points, points, indexing="ij")
        grid = math.sqrt(2) * torch.stack([t1.reshape(-1), t2.reshape(-1)], 1)[:, None, :]
        z = best_mu + (0.5 * best_logvar).exp() * grid
        mass = (weights_[:, None] * weights_[None, :]).reshape(-1) / math.pi
        likelihood = Independent(Bernoulli(logits=(z @ model.W.detach() + model.c.detach())[..., observed]), 1)
        loss = -((mass[:, None] * likelihood.log_prob(x[:, observed])).sum(0)
                 - kl_to_standard_normal(best_mu, best_logvar)).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    best = observed_elbo_by_quadrature(model, x, observed, best_mu.detach(), best_logvar.detach())
    reached = observed_elbo_by_quadrature(model, x, observed, mu, logvar)
    assert (best - reached).max() < 0.05 and (best - reached).min() > -1e-6


def test_svi_ignores_the_unobserved_pixels():
    model = LinearDecoder(seed=2)
    x = torch.bernoulli(torch.full((2, 16), 0.5, dtype=DOUBLE), generator=torch.Generator().manual_seed(3))
    observed = torch.arange(16) < 8
    start = torch.zeros(2, 2, dtype=DOUBLE)
    torch.manual_seed(4)
    first = fit_q(model, x, observed, start, start, steps=50)
    torch.manual_seed(4)
    second = fit_q(model, torch.where(observed, x, 1 - x), observed, start, start, steps=50)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_svi_draws_samples_of_q_per_step_and_takes_adams_steps_of_lr(monkeypatch):
    """With the signature's defaults (16 draws, lr 0.05): `reparameterize` is asked for 16 draws at each step, and
    Adam's first step moves every parameter by lr (its first update is lr * g / |g|; Kingma & Ba 2015, section 2.1)."""
    import answers.vae

    asked = []
    original = answers.vae.reparameterize

    def counting(mu, logvar, samples=None):
        asked.append(samples)
        return original(mu, logvar, samples)

    monkeypatch.setattr(answers.vae, "reparameterize", counting)
    model = LinearDecoder(seed=5)
    x = torch.bernoulli(torch.full((2, 16), 0.5, dtype=DOUBLE), generator=torch.Generator().manual_seed(6))
    start = torch.zeros(2, 2, dtype=DOUBLE)
    torch.manual_seed(7)
    mu, logvar = fit_q(model, x, torch.ones(16, dtype=torch.bool), start, start, steps=1)
    assert asked == [16]
    assert torch.allclose(torch.cat([mu, logvar]).abs(), torch.full((4, 2), 0.05, dtype=DOUBLE), rtol=1e-4)
    fit_q(model, x, torch.ones(16, dtype=torch.bool), start, start, steps=3, samples=5)
    assert asked == [16, 5, 5, 5]
