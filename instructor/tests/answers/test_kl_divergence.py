"""The answers of notebook 03 (answers/kl_divergence.py), each formula against an independent route.

Part of the mutation-testing suite of `make mutate`: every assertion is exact enough that a wrong sign, a dropped term
or a swapped index in an answer changes its outcome.
"""
import math

import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence

from answers.kl_divergence import (
    gaussian_kl,
    gaussian_kl_full,
    js_segments,
    kl_equal_variance,
    kl_segments,
    kl_to_standard_normal,
    pairs,
    wasserstein1_empirical,
)

DOUBLE = torch.float64


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


def test_equal_variance_kl_is_the_general_one_with_equal_spreads():
    g = torch.Generator().manual_seed(3)
    m1, m2, s = torch.randn(100, generator=g, dtype=DOUBLE), torch.randn(100, generator=g, dtype=DOUBLE), \
        torch.rand(100, generator=g, dtype=DOUBLE) + 0.1
    assert torch.allclose(kl_equal_variance(m1, m2, s), kl_divergence(Normal(m1, s), Normal(m2, s)), rtol=1e-12, atol=0)


def test_the_chosen_pairs_have_a_very_small_and_a_very_large_kl():
    small, large = (kl_divergence(Normal(*map(torch.tensor, p[:2])), Normal(*map(torch.tensor, p[2:]))).item()
                    for p in (pairs["small"], pairs["large"]))
    assert small < 0.01 and large > 10
