"""Divergences and bounds, each named after the formula it computes; notebooks derive them, tests pin them."""
import math

import torch


def gaussian_kl(m1, s1, m2, s2):
    """KL(N(m1, s1^2) || N(m2, s2^2)) in nats, elementwise (s1, s2 are standard deviations)."""
    m1, s1, m2, s2 = map(torch.as_tensor, (m1, s1, m2, s2))
    return torch.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5


def gaussian_kl_full(m1, cov1, m2, cov2):
    """KL(N(m1, cov1) || N(m2, cov2)) = 1/2 [tr(cov2^-1 cov1) - d + (m2-m1)^T cov2^-1 (m2-m1) + log |cov2|/|cov1|]."""
    d = m1.shape[-1]
    chol2 = torch.linalg.cholesky(cov2)
    trace = torch.cholesky_solve(cov1, chol2).diagonal(dim1=-2, dim2=-1).sum(-1)
    diff = (m2 - m1).unsqueeze(-1)
    quadratic = (diff * torch.cholesky_solve(diff, chol2)).sum((-2, -1))
    log_det_ratio = 2 * chol2.diagonal(dim1=-2, dim2=-1).log().sum(-1) - torch.logdet(cov1)
    return 0.5 * (trace - d + quadratic + log_det_ratio)


def kl_to_standard_normal(mu, logvar):
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) = 1/2 sum(s^2 + mu^2 - log s^2 - 1): the VAE's regulariser."""
    return 0.5 * (logvar.exp() + mu**2 - logvar - 1).sum(-1)


def monte_carlo_kl(p, q, n: int):
    """(estimate, standard error) of KL(p || q) = E_p[log p(x) - log q(x)] from n samples of p."""
    x = p.sample((n,))
    log_ratio = p.log_prob(x) - q.log_prob(x)
    return log_ratio.mean(0), log_ratio.std(0) / math.sqrt(n)


def log_mean_exp(values, dim: int = 0):
    """log(mean(exp(values))) along dim without overflow: log-likelihood estimates from log-weights."""
    return torch.logsumexp(values, dim) - math.log(values.shape[dim])


def wasserstein1_empirical(a, b) -> float:
    """Exact W1 between the uniform distributions on two equal-size point sets (an optimal assignment)."""
    from scipy.optimize import linear_sum_assignment

    # the matmul shortcut of cdist loses ~1e-9; exact distances keep W1 exact on exact inputs
    cost = torch.cdist(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64),
                       compute_mode="donot_use_mm_for_euclid_dist")
    rows, cols = linear_sum_assignment(cost.numpy())
    return float(cost[rows, cols].mean())


def negative_elbo(log_likelihood, kl):
    """The training loss: the minibatch mean of reconstruction -log p(x|z) plus regulariser KL(q(z|x) || p(z))."""
    return (kl - log_likelihood).mean()
