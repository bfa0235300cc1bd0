import math

import pytest
import torch
from torch.distributions import Bernoulli, Independent, Normal

from helpers import VAE, load_model, save_checkpoint


@pytest.fixture
def digits():
    return torch.bernoulli(torch.rand(8, 784, generator=torch.Generator().manual_seed(0)))


def test_importance_sampled_log_likelihood_matches_quadrature(digits):
    """With a 1-D latent, p(x) = integral p(x|z) N(z; 0, 1) dz can be computed on a fine grid: an independent route."""
    torch.manual_seed(0)
    model = VAE(latent_dim=1, hidden=(32,)).double()
    x = digits[:3].double()
    z = torch.linspace(-10, 10, 20001, dtype=torch.float64)[:, None]
    with torch.no_grad():
        log_integrand = model.log_px_given_z(x, z[:, None, :].expand(-1, 3, -1)) + Normal(0.0, 1.0).log_prob(z)
    quadrature = torch.logsumexp(log_integrand, 0) + math.log(z[1, 0] - z[0, 0])
    estimate = model.log_likelihood(x, k=20000, chunk=5000)
    assert torch.allclose(estimate, quadrature, atol=0.05), (estimate, quadrature)
    assert (model.elbo(x, samples=2000) < quadrature).all()


def test_bernoulli_and_gaussian_likelihoods_match_torch_distributions(digits):
    torch.manual_seed(0)
    z = torch.randn(5, 8, 2)
    bernoulli = VAE(2)
    expected = Independent(Bernoulli(logits=bernoulli.decoder(z)), 1).log_prob(digits)
    assert torch.allclose(bernoulli.log_px_given_z(digits, z), expected, atol=1e-3)
    gaussian = VAE(2, likelihood="gaussian", precision=50.0)
    expected = Independent(Normal(gaussian.decode(z), 50.0**-0.5), 1).log_prob(digits)
    assert torch.allclose(gaussian.log_px_given_z(digits, z), expected, rtol=1e-5)


def test_fixed_variance_encoder_outputs_only_the_mean(digits):
    model = VAE(2, fixed_std=0.1)
    mu, logvar = model.encode(digits)
    assert model.encoder[-1].out_features == 2 and mu.shape == (8, 2)
    assert torch.allclose(logvar, torch.full_like(mu, math.log(0.01)))


def test_elbo_is_a_lower_bound_on_the_importance_estimate(digits):
    torch.manual_seed(0)
    model = VAE(20)
    assert model.elbo(digits, samples=500).mean() < model.log_likelihood(digits, k=500).mean()
    loss = model.loss(digits)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())  # the reparameterised loss reaches every weight


def test_saved_models_load_back_and_sample_alike_on_any_device(tmp_path, digits):
    model = VAE(20, hidden=(64,), activation="relu")
    save_checkpoint(tmp_path / "vae.pt", model, {"epochs": 1})
    loaded = load_model(tmp_path / "vae.pt")
    assert loaded.config == model.config
    a = loaded.sample(4, generator=torch.Generator().manual_seed(1))
    b = model.eval().sample(4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (4, 784) and 0 <= a.min() and a.max() <= 1


def test_unknown_options_are_refused():
    with pytest.raises(ValueError, match="likelihood='poisson'"):
        VAE(2, likelihood="poisson")
