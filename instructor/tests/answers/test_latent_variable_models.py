"""The answers of notebook 02 (answers/latent_variable_models.py), each formula against an independent route.

Part of the mutation-testing suite of `make mutate`: every assertion is exact enough that a wrong sign, a dropped term
or a swapped index in an answer changes its outcome. Identities (log p(x) = ELBO + KL, the stationarity of the
Lagrangian) are checked against quantities computed here by another route, estimators draw by draw on given samples
and against exact values on average.
"""
import math

import pytest
import torch
from torch.distributions import Categorical, Independent, MultivariateNormal, Normal, kl_divergence

from answers.latent_variable_models import (
    elbo_gap,
    importance_log_marginal,
    lagrange_multiplier,
    linear_gaussian_elbo,
    linear_gaussian_posterior,
    naive_log_marginal,
    negative_elbo,
    optimal_q,
    per_datapoint_loss,
)

DOUBLE = torch.float64


@pytest.fixture
def float64_by_default():
    """The notebooks run with torch.set_default_dtype(torch.float64): answers must still keep their inputs' dtype."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(DOUBLE)
    yield
    torch.set_default_dtype(previous)


def test_negative_elbo_is_the_minibatch_mean_of_minus_reconstruction_plus_kl():
    g = torch.Generator().manual_seed(0)
    reconstruction, kl = -10 * torch.rand(8, generator=g, dtype=DOUBLE), torch.rand(8, generator=g, dtype=DOUBLE)
    expected = sum(-r + k for r, k in zip(reconstruction.tolist(), kl.tolist())) / 8
    loss = negative_elbo(reconstruction, kl)
    assert loss.shape == () and abs(loss.item() - expected) < 1e-14


class LinearGaussianModel:
    """z ~ N(0, I_d), x | z ~ N(W z + b, s^2 I_D), with its marginal and posterior by Gaussian conditioning:
    x ~ N(b, S), S = W W^T + s^2 I; z | x ~ N(W^T S^-1 (x - b), I - W^T S^-1 W) (no answer code involved)."""

    def __init__(self, D=5, d=3, s=0.7, seed=0, dtype=DOUBLE):
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(D, d, generator=g, dtype=DOUBLE).to(dtype)
        self.b = torch.randn(D, generator=g, dtype=DOUBLE).to(dtype)
        self.s, self.D, self.d = s, D, d
        self.x = (self.W @ torch.randn(d, generator=g, dtype=dtype) + self.b
                  + s * torch.randn(D, generator=g, dtype=DOUBLE).to(dtype))
        W, b, x = self.W.double(), self.b.double(), self.x.double()
        self.S = W @ W.T + s**2 * torch.eye(D, dtype=DOUBLE)
        self.post_mean = W.T @ torch.linalg.solve(self.S, x - b)
        self.post_cov = torch.eye(d, dtype=DOUBLE) - W.T @ torch.linalg.solve(self.S, W)

    def log_px(self):
        return MultivariateNormal(self.b.double(), self.S).log_prob(self.x.double())

    def log_joint(self, z):
        """log p(x | z) + log p(z), by torch.distributions."""
        log_lik = Normal(z @ self.W.double().T + self.b.double(), self.s).log_prob(self.x.double()).sum(-1)
        return log_lik + Normal(0.0, 1.0).log_prob(z).sum(-1)

    def posterior(self):
        return MultivariateNormal(self.post_mean, self.post_cov)


def random_gaussians(batch, d, seed):
    g = torch.Generator().manual_seed(seed)
    L = torch.randn(*batch, d, d, generator=g, dtype=DOUBLE)
    return MultivariateNormal(2 * torch.randn(*batch, d, generator=g, dtype=DOUBLE),
                              L @ L.mT / d + 0.1 * torch.eye(d, dtype=DOUBLE))


def test_linear_gaussian_posterior_is_bayes_rule_and_gaussian_conditioning():
    model = LinearGaussianModel()
    posterior = linear_gaussian_posterior(model.x, model.W, model.b, model.s)
    assert torch.allclose(posterior.mean, model.post_mean, rtol=0, atol=1e-12)
    assert torch.allclose(posterior.covariance_matrix, model.post_cov, rtol=0, atol=1e-12)
    z = torch.randn(6, model.d, generator=torch.Generator().manual_seed(1), dtype=DOUBLE)
    bayes = model.log_joint(z) - model.log_px()
    assert torch.allclose(posterior.log_prob(z), bayes, rtol=0, atol=1e-11)


def test_linear_gaussian_answers_keep_float32_inputs_in_float32_under_a_float64_default(float64_by_default):
    model = LinearGaussianModel(dtype=torch.float32)
    posterior = linear_gaussian_posterior(model.x, model.W, model.b, model.s)
    assert posterior.mean.dtype == torch.float32 and posterior.covariance_matrix.dtype == torch.float32
    assert torch.allclose(posterior.mean.double(), model.post_mean, atol=1e-4)
    q = MultivariateNormal(posterior.mean + 0.3, 2 * posterior.covariance_matrix)
    bound = linear_gaussian_elbo(model.x, q, model.W, model.b, model.s)
    q64 = MultivariateNormal(q.mean.double(), q.covariance_matrix.double())
    assert bound.dtype == torch.float32
    assert abs(bound.item() - (model.log_px() - kl_divergence(q64, model.posterior())).item()) < 1e-3


@pytest.mark.parametrize("batch", [(), (4,), (2, 3)])
def test_log_px_is_the_elbo_plus_the_kl_to_the_posterior(batch):
    """A5 on the linear-Gaussian model: log p(x) = L(q) + KL(q || p(z|x)) for any Gaussian q, one or a batch."""
    model = LinearGaussianModel()
    q = random_gaussians(batch, model.d, seed=len(batch))
    bound = linear_gaussian_elbo(model.x, q, model.W, model.b, model.s)
    assert bound.shape == batch
    gap = kl_divergence(q, model.posterior())
    assert torch.allclose(bound + gap, model.log_px().expand(batch), rtol=0, atol=1e-10)
    assert (bound < model.log_px()).all()


@pytest.mark.parametrize("batch", [(), (5,)])
def test_elbo_gap_is_log_px_minus_the_elbo_term_by_term(batch):
    """C1c: elbo_gap(q, posterior) = log p(x) - L(q), with L(q) written out here as E_q log p(x | z) + E_q log p(z) +
    the entropy of q in the Gaussian closed forms (no KL anywhere), for one q or a batch."""
    model = LinearGaussianModel()
    q = random_gaussians(batch, model.d, seed=7)
    W, b, s, x = model.W.double(), model.b.double(), model.s, model.x.double()
    mean, covariance = q.mean, q.covariance_matrix
    likelihood = (-0.5 * model.D * math.log(2 * math.pi * s**2)
                  - ((x - mean @ W.T - b).square().sum(-1) + torch.einsum("ij,...jk,ik->...", W, covariance, W))
                  / (2 * s**2))
    prior = -0.5 * model.d * math.log(2 * math.pi) - 0.5 * (mean.square().sum(-1)
                                                             + covariance.diagonal(0, -2, -1).sum(-1))
    entropy = 0.5 * model.d * (1 + math.log(2 * math.pi)) + 0.5 * torch.logdet(covariance)
    gap = elbo_gap(q, model.posterior())
    assert gap.shape == batch
    assert torch.allclose(gap, model.log_px() - (likelihood + prior + entropy), rtol=0, atol=1e-10)
    assert (gap > 0).all() and abs(elbo_gap(model.posterior(), model.posterior())) < 1e-12


def test_the_elbo_is_tight_at_the_posterior_and_matches_its_monte_carlo_average():
    model = LinearGaussianModel(D=4, d=2, s=1.3, seed=5)
    bound = linear_gaussian_elbo(model.x, model.posterior(), model.W, model.b, model.s)
    assert abs(bound - model.log_px()) < 1e-10
    q = random_gaussians((), model.d, seed=6)
    torch.manual_seed(0)
    z = q.sample((20_000,))
    terms = model.log_joint(z) - q.log_prob(z)
    standard_error = terms.std() / len(terms) ** 0.5
    assert abs(terms.mean() - linear_gaussian_elbo(model.x, q, model.W, model.b, model.s)) < 4 * standard_error


def test_linear_gaussian_posterior_of_a_batch_of_observations_is_each_rows_posterior():
    model = LinearGaussianModel()
    g = torch.Generator().manual_seed(9)
    batch = torch.randn(2, 3, model.D, generator=g, dtype=DOUBLE) + model.b
    posterior = linear_gaussian_posterior(batch, model.W, model.b, model.s)
    assert posterior.mean.shape == (2, 3, model.d)
    for i in range(2):
        for j in range(3):
            single = linear_gaussian_posterior(batch[i, j], model.W, model.b, model.s)
            assert torch.allclose(posterior.mean[i, j], single.mean, rtol=0, atol=1e-13)
            assert torch.allclose(posterior.covariance_matrix[i, j], single.covariance_matrix, rtol=0, atol=1e-13)


def test_linear_gaussian_elbo_is_differentiable_in_the_model_parameters():
    """Notebook 02 takes gradient steps on the ELBO over (W, b): its gradient against central finite differences."""
    model = LinearGaussianModel(seed=3)
    q = random_gaussians((4,), model.d, seed=4)
    W, b = model.W.clone().requires_grad_(True), model.b.clone().requires_grad_(True)
    grad_W, grad_b = torch.autograd.grad(linear_gaussian_elbo(model.x, q, W, b, model.s).sum(), (W, b))
    eps = 1e-6
    for tensor, grad in ((model.W, grad_W), (model.b, grad_b)):
        for index in [(0, 0), (2, 1), (4, 2)] if tensor.dim() == 2 else [(0,), (3,)]:
            up, down = tensor.clone(), tensor.clone()
            up[index] += eps
            down[index] -= eps
            args_up = (up, model.b) if tensor.dim() == 2 else (model.W, up)
            args_down = (down, model.b) if tensor.dim() == 2 else (model.W, down)
            difference = (linear_gaussian_elbo(model.x, q, *args_up, model.s).sum()
                          - linear_gaussian_elbo(model.x, q, *args_down, model.s).sum()) / (2 * eps)
            assert abs(difference - grad[index]) < 1e-6 * max(1.0, abs(grad[index].item()))


class OneDimensional:
    """z ~ N(0, 1), x | z ~ N(z, 0.5^2): p(x) = N(x; 0, 1.25), p(z | x) = N(0.8 x, 0.2); z as (..., 1)."""
    x, s = 1.1, 0.5
    prior = MultivariateNormal(torch.zeros(1, dtype=DOUBLE), torch.eye(1, dtype=DOUBLE))
    posterior = MultivariateNormal(torch.tensor([0.8 * 1.1], dtype=DOUBLE), torch.tensor([[0.2]], dtype=DOUBLE))
    log_px = Normal(0.0, math.sqrt(1.25)).log_prob(torch.tensor(1.1, dtype=DOUBLE)).item()

    @classmethod
    def log_likelihood(cls, z):
        return Normal(z[..., 0], cls.s).log_prob(torch.tensor(cls.x, dtype=DOUBLE))


SHAPE = (2, 3, 50, 1)  # two leading axes of different sizes, K = 50 samples per estimate, d = 1


def test_a_constant_likelihood_gives_its_own_value_for_every_estimate():
    """(1/K) sum_k c = c: each of the 2 x 3 estimates, whatever the samples."""
    constant = lambda z: torch.full(z.shape[:-1], -2.5, dtype=DOUBLE)  # noqa: E731
    z = OneDimensional.prior.sample(SHAPE[:-1])
    naive = naive_log_marginal(constant, z)
    weighted = importance_log_marginal(constant, OneDimensional.prior, OneDimensional.prior, z)
    for estimate in (naive, weighted):
        assert estimate.shape == SHAPE[:2] and torch.allclose(estimate, torch.tensor(-2.5, dtype=DOUBLE), atol=1e-13)


def test_importance_sampling_from_the_exact_posterior_has_zero_variance():
    """Every weight p(x | z) p(z) / p(z | x) equals p(x): each estimate is exact, for any K."""
    m = OneDimensional
    estimate = importance_log_marginal(m.log_likelihood, m.prior, m.posterior, m.posterior.sample(SHAPE[:-1]))
    assert estimate.shape == SHAPE[:2] and torch.allclose(estimate, torch.tensor(m.log_px, dtype=DOUBLE), atol=1e-12)
    model = LinearGaussianModel()
    prior = MultivariateNormal(torch.zeros(model.d, dtype=DOUBLE), torch.eye(model.d, dtype=DOUBLE))
    log_likelihood = lambda z: model.log_joint(z) - prior.log_prob(z)  # noqa: E731
    z = model.posterior().sample((2, 3, 50))
    estimate = importance_log_marginal(log_likelihood, prior, model.posterior(), z)
    assert estimate.shape == (2, 3) and torch.allclose(estimate, model.log_px().expand(2, 3), atol=1e-10)


def test_both_estimators_average_the_likelihood_over_the_given_samples():
    """The log of the plain mean of p(x | z_k) (naive) and of the weights p(x | z_k) p(z_k) / q(z_k) (importance), over
    the samples axis, computed here with exp and mean."""
    m = OneDimensional
    proposal = MultivariateNormal(torch.tensor([0.5], dtype=DOUBLE), torch.tensor([[0.64]], dtype=DOUBLE))
    g = torch.Generator().manual_seed(11)
    z = torch.randn(*SHAPE, generator=g, dtype=DOUBLE)
    assert torch.allclose(naive_log_marginal(m.log_likelihood, z), m.log_likelihood(z).exp().mean(-1).log(),
                          rtol=0, atol=1e-13)
    weights = m.log_likelihood(z).exp() * m.prior.log_prob(z).exp() / proposal.log_prob(z).exp()
    assert torch.allclose(importance_log_marginal(m.log_likelihood, m.prior, proposal, z), weights.mean(-1).log(),
                          rtol=0, atol=1e-13)


def test_both_estimators_stay_in_log_space():
    """Likelihoods 1000 nats below 0 (exp underflows to 0): the estimates move down by exactly 1000."""
    m = OneDimensional
    z = torch.randn(*SHAPE, generator=torch.Generator().manual_seed(12), dtype=DOUBLE)
    low = lambda z: m.log_likelihood(z) - 1000.0  # noqa: E731
    assert torch.allclose(naive_log_marginal(low, z), naive_log_marginal(m.log_likelihood, z) - 1000, atol=1e-10)
    assert torch.allclose(importance_log_marginal(low, m.prior, m.prior, z),
                          importance_log_marginal(m.log_likelihood, m.prior, m.prior, z) - 1000, atol=1e-10)


def test_both_estimators_are_unbiased_for_p_x():
    """E[p-hat] = p(x): the mean of exp(estimate) over 4,000 estimates within 4 standard errors of the exact p(x)."""
    m = OneDimensional
    proposal = MultivariateNormal(torch.tensor([0.5], dtype=DOUBLE), torch.tensor([[0.64]], dtype=DOUBLE))
    torch.manual_seed(2)
    for estimate in (naive_log_marginal(m.log_likelihood, m.prior.sample((4000, 5))),
                     importance_log_marginal(m.log_likelihood, m.prior, proposal, proposal.sample((4000, 5)))):
        p_hat = estimate.exp()
        assert abs(p_hat.mean() - math.exp(m.log_px)) < 4 * p_hat.std() / len(p_hat) ** 0.5


def discrete_problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    log_joint = torch.randn(2, 3, 6, generator=g, dtype=DOUBLE) - 2        # log p(x, z = k), not normalised
    log_q = torch.log_softmax(2 * torch.randn(2, 3, 6, generator=g, dtype=DOUBLE), -1)
    return log_joint, log_q


def discrete_elbo(q, log_joint):
    """sum_k q_k (log p(x, k) - log q_k), by torch.distributions: E_q log p(x, z) + H(q)."""
    return (q * log_joint).sum(-1) + Categorical(probs=q).entropy()


def test_optimal_q_is_bayes_posterior_and_attains_log_px():
    log_joint, log_q = discrete_problem(1)
    q_star = optimal_q(log_joint)
    bayes = log_joint.exp() / log_joint.exp().sum(-1, keepdim=True)
    assert torch.allclose(q_star, bayes, rtol=0, atol=1e-15)
    log_px = log_joint.exp().sum(-1).log()
    assert torch.allclose(discrete_elbo(q_star, log_joint), log_px, rtol=0, atol=1e-12)
    assert (discrete_elbo(log_q.exp(), log_joint) < log_px).all()


def test_optimal_q_of_very_unlikely_data_is_still_a_distribution():
    """log p(x, z = k) near -1000 (a high-dimensional x): exp underflows, the posterior does not."""
    log_joint, _ = discrete_problem(3)
    q_star = optimal_q(log_joint - 1000)
    assert torch.allclose(q_star, optimal_q(log_joint), rtol=0, atol=1e-11)   # the inputs themselves round at 1e-13
    assert torch.allclose(lagrange_multiplier(log_joint - 1000), lagrange_multiplier(log_joint) + 1000, atol=1e-10)


def test_the_lagrangian_is_stationary_at_q_star_with_the_multiplier():
    """d/dq_k [L(q) + lambda (sum_j q_j - 1)] = log p(x, k) - log q_k - 1 + lambda = 0 at q*: autograd, and by hand."""
    log_joint, _ = discrete_problem(2)
    lam = lagrange_multiplier(log_joint)
    assert lam.shape == (2, 3)
    assert torch.allclose(lam, 1 - log_joint.exp().sum(-1).log(), rtol=0, atol=1e-14)
    q = (log_joint.exp() / log_joint.exp().sum(-1, keepdim=True)).requires_grad_(True)
    lagrangian = (q * (log_joint - q.log())).sum(-1) + lam * (q.sum(-1) - 1)
    (gradient,) = torch.autograd.grad(lagrangian.sum(), q)
    assert gradient.abs().max() < 1e-12


def vae_batch(seed):
    """A linear-Gaussian decoder, 5 datapoints, encoder outputs and one reparameterised sample per datapoint."""
    model = LinearGaussianModel(D=4, d=2, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    x = torch.randn(5, 4, generator=g, dtype=DOUBLE) + model.b
    mu, logvar = torch.randn(5, 2, generator=g, dtype=DOUBLE), torch.randn(5, 2, generator=g, dtype=DOUBLE)
    z = mu + (0.5 * logvar).exp() * torch.randn(5, 2, generator=g, dtype=DOUBLE)
    log_likelihood = lambda x_, z_: Normal(z_ @ model.W.T + model.b, model.s).log_prob(x_).sum(-1)  # noqa: E731
    return model, x, z, mu, logvar, log_likelihood


def test_per_datapoint_loss_is_minus_the_reconstruction_plus_the_closed_form_kl():
    model, x, z, mu, logvar, log_likelihood = vae_batch(0)
    kl = kl_divergence(Independent(Normal(mu, (0.5 * logvar).exp()), 1), Independent(Normal(0.0, torch.ones(2)), 1))
    by_hand = 0.5 * ((0.5 * logvar).exp() ** 2 + mu**2 - 1 - logvar).sum(-1)   # the Gaussian KL to N(0, I)
    loss = per_datapoint_loss(x, z, mu, logvar, log_likelihood)
    assert loss.shape == (5,)
    assert torch.allclose(kl, by_hand, rtol=0, atol=1e-13)
    assert torch.allclose(loss, -log_likelihood(x, z) + by_hand, rtol=0, atol=1e-12)


def test_per_datapoint_loss_averages_to_minus_the_exact_elbo():
    """Over 40,000 samples of q: the mean loss of each datapoint is -ELBO = KL(q || p(z | x)) - log p(x), within 5
    standard errors (the posterior and the evidence of the test's own model)."""
    model, x, _, mu, logvar, log_likelihood = vae_batch(1)
    sigma = (0.5 * logvar).exp()
    g = torch.Generator().manual_seed(5)
    n = 40_000
    z = mu + sigma * torch.randn(n, 5, 2, generator=g, dtype=DOUBLE)
    losses = per_datapoint_loss(x.repeat(n, 1), z.reshape(-1, 2), mu.repeat(n, 1), logvar.repeat(n, 1),
                                log_likelihood).reshape(n, 5)
    S = model.W @ model.W.T + model.s**2 * torch.eye(4, dtype=DOUBLE)
    exact = []
    for xn, m, sd in zip(x, mu, sigma):
        post_mean = model.W.T @ torch.linalg.solve(S, xn - model.b)
        post_cov = torch.eye(2, dtype=DOUBLE) - model.W.T @ torch.linalg.solve(S, model.W)
        q = MultivariateNormal(m, torch.diag(sd**2))
        exact.append(kl_divergence(q, MultivariateNormal(post_mean, post_cov))
                     - MultivariateNormal(model.b, S).log_prob(xn))
    exact = torch.stack(exact)
    assert ((losses.mean(0) - exact).abs() < 5 * losses.std(0) / n**0.5).all()
