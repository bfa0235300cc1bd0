import torch

from helpers.measures import gaussian_frechet_distance, isolated_pixels


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200_000, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5])
    a = a + torch.tensor([1.0, 0, 0])
    b = torch.randn(200_000, 3, generator=g, dtype=torch.float64) * torch.tensor([2.0, 2.0, 1.0])
    # diagonal covariances: ||mu_a - mu_b||^2 + sum (s_a - s_b)^2
    expected = 1.0 + (1 - 2) ** 2 + 0 + (0.5 - 1) ** 2
    assert abs(gaussian_frechet_distance(a, b) - expected) < 0.05
    assert abs(gaussian_frechet_distance(a, a)) < 1e-8


def test_isolated_pixels_counts_salt_and_pepper_but_not_strokes():
    clean = torch.zeros(2, 28, 28)
    clean[:, 5:20, 10:13] = 1.0                              # a stroke three pixels wide
    assert isolated_pixels(clean.reshape(2, 784)) == 0
    noisy = clean.clone()
    noisy[0, 2, 2] = noisy[0, 25, 25] = 0.9                  # two lone bright pixels (salt)
    noisy[1, 10, 11] = 0.1                                   # a hole inside the stroke (pepper)
    noisy[1, 2, 3] = noisy[1, 3, 3] = 1.0                    # two touching pixels are a speck, not salt
    assert isolated_pixels(noisy.reshape(2, 784)) == (2 + 1) / 2
