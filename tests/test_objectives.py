"""Each closed form against torch.distributions or an independent computation."""
import math

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from helpers.objectives import (
    gaussian_kl,
    gaussian_kl_full,
    kl_to_standard_normal,
    log_mean_exp,
    monte_carlo_kl,
    wasserstein1_empirical,
)


def test_univariate_kl_matches_torch_and_is_asymmetric():
    m1, m2 = torch.randn(100).double(), torch.randn(100).double()
    s1, s2 = torch.rand(100).double() + 0.1, torch.rand(100).double() + 0.1
    expected = kl_divergence(Normal(m1, s1), Normal(m2, s2))
    assert torch.allclose(gaussian_kl(m1, s1, m2, s2), expected, rtol=1e-12, atol=1e-12)
    assert gaussian_kl(0.0, 1.0, 0.0, 1.0) == 0
    assert not torch.isclose(gaussian_kl(0.0, 1.0, 1.0, 2.0), gaussian_kl(1.0, 2.0, 0.0, 1.0))


def random_covariance(d, generator):
    a = torch.randn(d, d, generator=generator, dtype=torch.float64)
    return a @ a.T + 0.5 * torch.eye(d, dtype=torch.float64)


@pytest.mark.parametrize("d", [1, 3, 8])
def test_full_covariance_kl_matches_torch(d):
    g = torch.Generator().manual_seed(d)
    m1, m2 = torch.randn(d, generator=g, dtype=torch.float64), torch.randn(d, generator=g, dtype=torch.float64)
    c1, c2 = random_covariance(d, g), random_covariance(d, g)
    expected = kl_divergence(MultivariateNormal(m1, c1), MultivariateNormal(m2, c2))
    assert torch.allclose(gaussian_kl_full(m1, c1, m2, c2), expected, rtol=1e-10)


def test_diagonal_kl_to_standard_normal_matches_the_general_formula():
    mu, logvar = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    general = gaussian_kl(mu, (0.5 * logvar).exp(), torch.zeros(()), torch.ones(())).sum(-1)
    assert torch.allclose(kl_to_standard_normal(mu, logvar), general, rtol=1e-12)


def test_monte_carlo_kl_brackets_the_closed_form():
    torch.manual_seed(0)
    p, q = Normal(torch.tensor(0.0), torch.tensor(1.0)), Normal(torch.tensor(1.0), torch.tensor(2.0))
    estimate, stderr = monte_carlo_kl(p, q, 200_000)
    assert abs(estimate - kl_divergence(p, q)) < 4 * stderr


def test_log_mean_exp_is_stable():
    values = torch.tensor([1000.0, 1000.0 + math.log(3.0)])
    assert torch.isclose(log_mean_exp(values), torch.tensor(1000.0 + math.log(2.0)))


def test_wasserstein_of_a_shifted_point_set_is_the_shift():
    a = torch.rand(50, 2, dtype=torch.float64)
    assert abs(wasserstein1_empirical(a, a + torch.tensor([0.3, 0.4], dtype=torch.float64)) - 0.5) < 1e-12
    assert wasserstein1_empirical(a, a.flip(0)) == 0


def test_negative_elbo_is_the_minibatch_mean_of_reconstruction_plus_kl():
    from helpers.objectives import negative_elbo

    log_likelihood, kl = torch.tensor([-3.0, -5.0]), torch.tensor([1.0, 2.0])
    assert negative_elbo(log_likelihood, kl) == (4.0 + 7.0) / 2


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians():
    from helpers.gan import gaussian_frechet_distance

    g = torch.Generator().manual_seed(0)
    a = torch.randn(200_000, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5])
    a = a + torch.tensor([1.0, 0, 0])
    b = torch.randn(200_000, 3, generator=g, dtype=torch.float64) * torch.tensor([2.0, 2.0, 1.0])
    # diagonal covariances: ||mu_a - mu_b||^2 + sum (s_a - s_b)^2
    expected = 1.0 + (1 - 2) ** 2 + 0 + (0.5 - 1) ** 2
    assert abs(gaussian_frechet_distance(a, b) - expected) < 0.05
    assert abs(gaussian_frechet_distance(a, a)) < 1e-8
