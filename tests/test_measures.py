import torch

from helpers.measures import gaussian_frechet_distance


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200_000, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5])
    a = a + torch.tensor([1.0, 0, 0])
    b = torch.randn(200_000, 3, generator=g, dtype=torch.float64) * torch.tensor([2.0, 2.0, 1.0])
    # diagonal covariances: ||mu_a - mu_b||^2 + sum (s_a - s_b)^2
    expected = 1.0 + (1 - 2) ** 2 + 0 + (0.5 - 1) ** 2
    assert abs(gaussian_frechet_distance(a, b) - expected) < 0.05
    assert abs(gaussian_frechet_distance(a, a)) < 1e-8
