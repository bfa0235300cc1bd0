"""The answers of notebook 05 (answers/gan_theory.py), each formula against an independent route.

Part of the mutation-testing suite of `make mutate`: every assertion is exact enough that a wrong sign, a dropped term
or a swapped index in an answer changes its outcome. Sampled answers are checked against exact sums with a tolerance
of a few standard errors (at fixed seeds, so each outcome is fixed); gradients against autograd and finite
differences; identities (V(D*, G) = -log 4 + 2 JSD, the gradients at D*) against quantities computed here by another
route.
"""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from answers.gan_theory import (
    FEATURES,
    discriminator_gradient,
    gan_value,
    generator_gradient,
    generator_loss_slopes,
    kl_on_grid,
    non_saturating_criterion,
    non_saturating_generator_gradient,
    optimal_discriminator,
    simultaneous_update,
    training_round,
    value_at_optimal_discriminator,
    value_on_grid,
)

DOUBLE = torch.float64
GRID = torch.linspace(-10, 10, 8001, dtype=DOUBLE)
DX = (GRID[1] - GRID[0]).item()


def density(mean, std, weight=1.0):
    """weight x N(mean, std^2) on the grid, normalised there so that its Riemann sum is exactly `weight`."""
    p = Normal(torch.tensor(mean, dtype=DOUBLE), torch.tensor(std, dtype=DOUBLE)).log_prob(GRID).exp()
    return weight * p / (p.sum() * DX)


def gan_data():
    return 0.6 * density(-1.5, 0.6) + 0.4 * density(2.0, 0.8), density(0.5, 2.0)


def discriminator(x):
    return torch.sigmoid(0.8 - 0.5 * x)


def generator(z):
    return 0.5 + 2.0 * z


def entropy_on_grid(p):
    return -(torch.special.xlogy(p, p) * DX).sum()


def jsd_by_entropies(p, q):
    """JSD(p || q) = H((p + q) / 2) - (H(p) + H(q)) / 2."""
    return entropy_on_grid((p + q) / 2) - (entropy_on_grid(p) + entropy_on_grid(q)) / 2


# --- C3a-C3d -----------------------------------------------------------------------------------------------------

def test_gan_value_is_the_two_sample_averages():
    g = torch.Generator().manual_seed(0)
    x_real, z = torch.randn(7, generator=g, dtype=DOUBLE), torch.randn(5, generator=g, dtype=DOUBLE)
    by_hand = (sum(F.logsigmoid(0.8 - 0.5 * x) for x in x_real) / 7
               + sum(F.logsigmoid(-(0.8 - 0.5 * generator(v))) for v in z) / 5)   # log(1 - sigmoid(s)) = logsigmoid(-s)
    assert abs(gan_value(discriminator, generator, x_real, z) - by_hand) < 1e-14


def test_the_value_by_samples_matches_the_integral_over_x():
    """C3a = C3b: averages over 200,000 samples of p_data and p_z against the Riemann sum on the grid."""
    p_data, p_g = gan_data()
    g = torch.Generator().manual_seed(2)
    n = 200_000
    from_first = torch.rand(n, generator=g) < 0.6
    first = -1.5 + 0.6 * torch.randn(n, generator=g, dtype=DOUBLE)
    second = 2.0 + 0.8 * torch.randn(n, generator=g, dtype=DOUBLE)
    x_real, z = torch.where(from_first, first, second), torch.randn(n, generator=g, dtype=DOUBLE)
    sampled = gan_value(discriminator, generator, x_real, z)
    real_terms, fake_terms = torch.log(discriminator(x_real)), torch.log(1 - discriminator(generator(z)))
    standard_error = math.sqrt((real_terms.var() + fake_terms.var()) / n)
    assert abs(sampled - value_on_grid(discriminator(GRID), p_data, p_g, DX)) < 4 * standard_error


def test_value_on_grid_of_a_constant_discriminator_weighs_log_d_by_the_two_masses():
    """D = c everywhere: V = M_data log c + M_G log(1 - c), M the densities' integrals (0.3 and 1.7 here)."""
    p_data, p_g = density(-1.0, 0.7, 0.3), density(1.5, 1.2, 1.7)
    for c in (0.2, 0.5, 0.9):
        expected = 0.3 * math.log(c) + 1.7 * math.log(1 - c)
        assert abs(value_on_grid(torch.full_like(GRID, c), p_data, p_g, DX) - expected) < 1e-12


def newton_discriminator(p_data, p_g):
    """The pointwise maximiser of p_data log D + p_G log(1 - D), by Newton's method on the logit (only f', f'')."""
    logits = torch.zeros_like(p_data)
    for _ in range(100):
        s = torch.sigmoid(logits)
        logits = logits + (p_data * (1 - s) - p_g * s) / ((p_data + p_g) * s * (1 - s))
    return torch.sigmoid(logits)


def test_optimal_discriminator_maximises_the_integrand_pointwise():
    p_data, p_g = gan_data()
    d_star = optimal_discriminator(p_data, p_g)
    support = (p_data + p_g) > 1e-6
    assert (d_star - newton_discriminator(p_data, p_g))[support].abs().max() < 1e-10
    logit = (0.6 * density(-1.5, 0.6) + 0.4 * density(2.0, 0.8)).log() - density(0.5, 2.0).log()
    assert torch.allclose(d_star, torch.sigmoid(logit), rtol=0, atol=1e-12)   # logit D* = log p_data - log p_G
    value = value_on_grid(d_star, p_data, p_g, DX)
    for shift in (-0.01, 0.01):
        assert value_on_grid((d_star + shift).clamp(1e-9, 1 - 1e-9), p_data, p_g, DX) < value


def test_kl_on_grid_matches_the_gaussian_closed_form_and_skips_zero_mass():
    p = Normal(torch.tensor(0.3, dtype=DOUBLE), torch.tensor(0.9, dtype=DOUBLE))
    q = Normal(torch.tensor(-0.5, dtype=DOUBLE), torch.tensor(1.6, dtype=DOUBLE))
    on_grid = kl_on_grid(density(0.3, 0.9), density(-0.5, 1.6), DX)
    assert abs(on_grid - kl_divergence(p, q).item()) < 1e-8   # q's mass beyond the grid: 3e-9
    # 0 log 0 = 0: a p with zeros, dx = 1 (a discrete KL)
    p, q = torch.tensor([0.5, 0.0, 0.5, 0.0], dtype=DOUBLE), torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=DOUBLE)
    assert abs(kl_on_grid(p, q, 1.0) - (0.5 * math.log(5) + 0.5 * math.log(0.5 / 0.3))) < 1e-15
    assert abs(kl_on_grid(p, q, 0.5) - 0.5 * (0.5 * math.log(5) + 0.5 * math.log(0.5 / 0.3))) < 1e-15


def test_the_value_at_the_optimal_discriminator_is_minus_log_4_plus_twice_the_jsd():
    """C3d: V at the numerically maximised D (summed here) is -log 4 + 2 JSD (entropies), minimal at p_G = p_data."""
    p_data, p_g = gan_data()
    d = newton_discriminator(p_data, p_g)
    value = ((p_data * d.log() + p_g * (1 - d).log()) * DX).sum()
    answer = value_at_optimal_discriminator(p_data, p_g, DX)
    assert abs(answer - value) < 1e-10 and abs(answer - (-math.log(4) + 2 * jsd_by_entropies(p_data, p_g))) < 1e-12
    assert abs(value_at_optimal_discriminator(p_data, p_data, DX) + math.log(4)) < 1e-12
    assert abs(value_at_optimal_discriminator(p_g, p_data, DX) - answer) < 1e-12          # symmetric
    # disjoint supports: JSD = log 2, so C(G) = 0
    left, right = torch.tensor([0.25, 0.75, 0.0, 0.0], dtype=DOUBLE), torch.tensor([0.0, 0.0, 0.4, 0.6], dtype=DOUBLE)
    assert abs(value_at_optimal_discriminator(left, right, 1.0)) < 1e-15


# --- A11-A16: the toy GAN ------------------------------------------------------------------------------------------

FEATURE_SETS = {"linear": lambda x: torch.stack([torch.ones_like(x), x], -1),
                "quadratic": lambda x: torch.stack([torch.ones_like(x), x, x**2], -1)}


def toy_gan(features, seed=0):
    g = torch.Generator().manual_seed(seed)
    x_real, z = 2.0 + 0.5 * torch.randn(64, generator=g, dtype=DOUBLE), torch.randn(64, generator=g, dtype=DOUBLE)
    w = torch.randn(len(FEATURE_SETS[features](torch.zeros(1))[0]), generator=g, dtype=DOUBLE)
    return w, 0.8, -0.3, x_real, z


def objective(w, a, c, x_real, z, features):
    """L = mean of log sigmoid(w . phi(x_i)) + log sigmoid(-w . phi(a z_i + c)), written here with logsigmoid."""
    phi = FEATURE_SETS[features]
    return F.logsigmoid(phi(x_real) @ w).mean() + F.logsigmoid(-(phi(a * z + c) @ w)).mean()


def non_saturating(w, a, c, z, features):
    return -F.logsigmoid(FEATURE_SETS[features](a * z + c) @ w).mean()


def autograd_gradients(w, a, c, x_real, z, features):
    """(dL/dw, dL/da, dL/dc, dL_G/da, dL_G/dc)."""
    w, a, c = w.clone().requires_grad_(True), torch.tensor(float(a), dtype=DOUBLE, requires_grad=True), \
        torch.tensor(float(c), dtype=DOUBLE, requires_grad=True)
    grad_w, grad_a, grad_c = torch.autograd.grad(objective(w, a, c, x_real, z, features), (w, a, c))
    ns_a, ns_c = torch.autograd.grad(non_saturating(w, a, c, z, features), (a, c))
    return grad_w, grad_a, grad_c, ns_a, ns_c


def test_the_feature_maps_and_their_derivatives():
    x = torch.linspace(-2, 2, 9, dtype=DOUBLE)
    for name, phi in FEATURE_SETS.items():
        assert torch.equal(FEATURES[name][0](x), phi(x))
        leaf = x.clone().requires_grad_(True)
        derivative = torch.stack([torch.autograd.grad(FEATURES[name][0](leaf)[:, k].sum(), leaf)[0]
                                  for k in range(phi(x).shape[1])], -1)
        assert torch.allclose(FEATURES[name][1](x), derivative, rtol=0, atol=1e-15)


@pytest.mark.parametrize("features", FEATURE_SETS)
def test_hand_gradients_match_autograd(features):
    """A11, A12, A13 for both feature maps."""
    w, a, c, x_real, z = toy_gan(features)
    expected = autograd_gradients(w, a, c, x_real, z, features)
    assert torch.allclose(discriminator_gradient(w, a, c, x_real, z, features), expected[0], rtol=1e-12, atol=1e-15)
    for got, want in ((generator_gradient(w, a, c, z, features), expected[1:3]),
                      (non_saturating_generator_gradient(w, a, c, z, features), expected[3:5])):
        assert all(abs(g - e) < 1e-13 * max(1.0, abs(e)) for g, e in zip(got, want)), (got, want)
    assert abs(expected[4] - expected[2]) > 1e-3   # the two generator losses do differ here


def test_hand_gradients_match_central_finite_differences():
    w, a, c, x_real, z = toy_gan("quadratic", seed=1)
    grad_w = discriminator_gradient(w, a, c, x_real, z, "quadratic")
    grad_a, grad_c = generator_gradient(w, a, c, z, "quadratic")
    ns_a, ns_c = non_saturating_generator_gradient(w, a, c, z, "quadratic")
    eps = 1e-6
    for k in range(len(w)):
        e = torch.zeros_like(w)
        e[k] = eps
        difference = (objective(w + e, a, c, x_real, z, "quadratic") - objective(w - e, a, c, x_real, z, "quadratic"))
        assert abs(difference / (2 * eps) - grad_w[k]) < 1e-8
    for f, (da, dc) in ((lambda a_, c_: objective(w, a_, c_, x_real, z, "quadratic"), (grad_a, grad_c)),
                        (lambda a_, c_: non_saturating(w, a_, c_, z, "quadratic"), (ns_a, ns_c))):
        assert abs((f(a + eps, c) - f(a - eps, c)) / (2 * eps) - da) < 1e-8
        assert abs((f(a, c + eps) - f(a, c - eps)) / (2 * eps) - dc) < 1e-8


def test_simultaneous_update_moves_both_players_from_the_same_point():
    w, a, c, x_real, z = toy_gan("linear", seed=2)
    grad_w, grad_a, grad_c, _, _ = autograd_gradients(w, a, c, x_real, z, "linear")
    lr = 0.03
    w_new, a_new, c_new = simultaneous_update(w, a, c, x_real, z, "linear", lr)
    assert torch.allclose(w_new, w + lr * grad_w, rtol=0, atol=1e-15)
    assert abs(a_new - (a - lr * grad_a.item())) < 1e-15 and abs(c_new - (c - lr * grad_c.item())) < 1e-15
    # first order: each player's own step changes L by about +- lr |gradient|^2
    rise = objective(w_new, a, c, x_real, z, "linear") - objective(w, a, c, x_real, z, "linear")
    fall = objective(w, a_new, c_new, x_real, z, "linear") - objective(w, a, c, x_real, z, "linear")
    assert rise == pytest.approx(lr * grad_w.square().sum().item(), rel=0.1)
    assert fall == pytest.approx(-lr * (grad_a**2 + grad_c**2).item(), rel=0.1)


def test_generator_loss_slopes_are_the_derivatives_at_the_logit():
    logit = torch.linspace(-9, 9, 37, dtype=DOUBLE, requires_grad=True)
    (minimax,) = torch.autograd.grad(F.logsigmoid(-logit).sum(), logit)
    (non_saturating_slope,) = torch.autograd.grad(-F.logsigmoid(logit).sum(), logit)
    got = generator_loss_slopes(torch.sigmoid(logit.detach()))
    assert torch.allclose(got[0], minimax, rtol=0, atol=1e-15)
    assert torch.allclose(got[1], non_saturating_slope, rtol=0, atol=1e-15)


@pytest.mark.parametrize("steps", [1, 3])
def test_training_round_is_k_discriminator_ascents_then_one_non_saturating_generator_descent(steps):
    w, a, c, x_real, z = toy_gan("quadratic", seed=3)
    g = torch.Generator().manual_seed(4)
    reals = [2 + 0.5 * torch.randn(16, generator=g, dtype=DOUBLE) for _ in range(steps)]
    noises = [torch.randn(16, generator=g, dtype=DOUBLE) for _ in range(steps)]
    generator_noise = torch.randn(16, generator=g, dtype=DOUBLE)
    expected_w = w
    for real, noise in zip(reals, noises):
        expected_w = expected_w + 0.2 * autograd_gradients(expected_w, a, c, real, noise, "quadratic")[0]
    ns_a, ns_c = autograd_gradients(expected_w, a, c, reals[0], generator_noise, "quadratic")[3:5]
    got_w, got_a, got_c = training_round(w, a, c, reals, noises, generator_noise, 0.2, 0.05, "quadratic")
    assert torch.allclose(got_w, expected_w, rtol=0, atol=1e-14)
    assert abs(got_a - (a - 0.05 * ns_a.item())) < 1e-14 and abs(got_c - (c - 0.05 * ns_c.item())) < 1e-14


# --- A17 -------------------------------------------------------------------------------------------------------------

def test_non_saturating_criterion_is_reverse_kl_minus_twice_the_jsd():
    p_data, p_g = gan_data()
    reverse_kl = -entropy_on_grid(p_g) - (torch.special.xlogy(p_g, p_data) * DX).sum()
    expected = reverse_kl - 2 * jsd_by_entropies(p_data, p_g)
    assert abs(non_saturating_criterion(p_data, p_g, DX) - expected) < 1e-12
    assert abs(non_saturating_criterion(p_data, p_data, DX)) < 1e-12
    # p_G = 0 on part of the grid: 0 log 0 = 0
    cut = torch.where(GRID < 1.0, p_g, torch.zeros_like(p_g))
    cut = cut / (cut.sum() * DX)
    reverse_kl = -entropy_on_grid(cut) - (torch.special.xlogy(cut, p_data) * DX).sum()
    assert abs(non_saturating_criterion(p_data, cut, DX) - (reverse_kl - 2 * jsd_by_entropies(p_data, cut))) < 1e-12


@pytest.mark.parametrize("a0, c0", [(1.0, 0.0), (0.6, 2.5)])
def test_the_generator_losses_at_d_star_follow_the_gradients_of_the_two_criteria(a0, c0):
    """Arjovsky and Bottou (2017), theorem 2.5: at D = D* held fixed, -E log D* has the gradient of KL - 2 JSD and
    E log(1 - D*) that of 2 JSD (so of C(G))."""
    p_data = density(2.0, 0.5)
    a, c = torch.tensor(a0, dtype=DOUBLE, requires_grad=True), torch.tensor(c0, dtype=DOUBLE, requires_grad=True)
    log_p = Normal(c, a).log_prob(GRID)
    p_theta = (log_p - torch.logsumexp(log_p, 0)).exp() / DX
    with torch.no_grad():
        d_star = p_data / (p_data + p_theta)
    ns = torch.autograd.grad(-(p_theta * d_star.log() * DX).sum(), (a, c), retain_graph=True)
    mm = torch.autograd.grad((p_theta * torch.log1p(-d_star) * DX).sum(), (a, c), retain_graph=True)
    ours_ns = torch.autograd.grad(non_saturating_criterion(p_data, p_theta, DX), (a, c), retain_graph=True)
    ours_mm = torch.autograd.grad(value_at_optimal_discriminator(p_data, p_theta, DX), (a, c))
    assert all(abs(x - y) < 1e-9 for x, y in zip(ours_ns, ns)) and all(abs(x - y) < 1e-9 for x, y in zip(ours_mm, mm))
