"""The theory notebooks' answer code (01, 02, 05, 07, exported to answers/), each formula against an independent route.

Like tests/test_answers.py, these tests are scored by `make mutate` (docs/mutation.md): every assertion is exact
enough that a wrong sign, a dropped term or a swapped index in an answer changes its outcome. Sampled answers are
checked against exact sums with a tolerance of a few standard errors (at fixed seeds, so each outcome is fixed), and
draw by draw against the generator's own uniforms; gradients against autograd and finite differences; identities
(log p(x) = ELBO + KL, V(D*, G) = -log 4 + 2 JSD) against quantities computed here by another route.
"""
import math
from dataclasses import dataclass
from graphlib import TopologicalSorter

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Categorical, MultivariateNormal, Normal, kl_divergence

from answers.ancestral_sampling import ancestral_sample, exact_probability
from answers.backprop import HandMLP, Linear, ReLU, Sigmoid, SoftmaxCrossEntropy, Tanh
from answers.gan_theory import (
    discriminator_gradient,
    gan_objective,
    gan_value,
    generator_gradient,
    hand_gradients,
    jsd_on_grid,
    kl_on_grid,
    optimal_discriminator,
    simultaneous_step,
    value_at_optimal_discriminator,
    value_on_grid,
)
from answers.latent_variable_models import (
    discrete_elbo,
    importance_log_marginal,
    lagrange_multiplier,
    linear_gaussian_elbo,
    linear_gaussian_posterior,
    naive_log_marginal,
    negative_elbo,
    optimal_q,
)

DOUBLE = torch.float64


@pytest.fixture
def float64_by_default():
    """The notebooks run with torch.set_default_dtype(torch.float64): answers must still keep their inputs' dtype."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(DOUBLE)
    yield
    torch.set_default_dtype(previous)


# --- ancestral sampling (notebook 01) ---------------------------------------------------------------------------

@dataclass
class Node:
    """The notebook's node: a table indexed by the parents' values (own value last), or a deterministic function."""
    parents: tuple = ()
    table: torch.Tensor | None = None
    function: object = None


def student_network(dtype=DOUBLE):
    """Notebook 01's network: D, F roots; G | D, F; S | F; L = [G == A] deterministic (a leaf)."""
    t = lambda values: torch.tensor(values, dtype=dtype)  # noqa: E731
    return {
        "D": Node(table=t([0.6, 0.4])),
        "F": Node(table=t([0.7, 0.3])),
        "G": Node(("D", "F"), table=t([[[0.30, 0.40, 0.30], [0.90, 0.08, 0.02]],
                                       [[0.05, 0.25, 0.70], [0.50, 0.30, 0.20]]])),
        "S": Node(("F",), table=t([[0.95, 0.05], [0.20, 0.80]])),
        "L": Node(("G",), function=lambda g: (g == 0).long()),
    }


def student_joint(network):
    """P(D, F, G, S, L) as one tensor: the factorisation contracted by einsum, the deterministic L as an indicator."""
    letter = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]], dtype=DOUBLE)  # [L = 1[G = A]], indexed (g, l)
    tables = [network[n].table.double() for n in "DFGS"]
    return torch.einsum("d,f,dfg,fs,gl->dfgsl", *tables, letter)


def relay_network():
    """A deterministic node in the middle: X = (A + B) mod 3 has a random child Y, and Z depends on Y and B."""
    t = lambda values: torch.tensor(values, dtype=DOUBLE)  # noqa: E731
    return {
        "A": Node(table=t([0.2, 0.5, 0.3])),
        "B": Node(table=t([0.65, 0.35])),
        "X": Node(("A", "B"), function=lambda a, b: (a + b) % 3),
        "Y": Node(("X",), table=t([[0.9, 0.1], [0.25, 0.75], [0.55, 0.45]])),
        "Z": Node(("Y", "B"), table=t([[[0.1, 0.2, 0.7], [0.5, 0.4, 0.1]], [[0.3, 0.3, 0.4], [0.05, 0.9, 0.05]]])),
    }


def relay_joint(network):
    a, b, x = torch.meshgrid(torch.arange(3), torch.arange(2), torch.arange(3), indexing="ij")
    indicator = ((a + b) % 3 == x).double()
    tables = [network[n].table for n in "ABYZ"]
    return torch.einsum("a,b,abx,xy,ybz->abxyz", tables[0], tables[1], indicator, tables[2], tables[3])


NETWORKS = {"student": (student_network, student_joint, "DFGSL"), "relay": (relay_network, relay_joint, "ABXYZ")}


def marginal(joint, names, query):
    """P(query) from the full joint tensor (axes in the order of `names`)."""
    index = tuple(query.get(name, slice(None)) for name in names)
    return joint[index].sum().item()


@pytest.mark.parametrize("name", NETWORKS)
def test_ancestral_samples_have_the_factorised_joint_distribution(name):
    """Every cell of the joint: the frequency over 100,000 samples within 5 standard errors of the exact probability."""
    make, joint_of, names = NETWORKS[name]
    network = make()
    joint = joint_of(network)
    n = 100_000
    samples = ancestral_sample(network, n, torch.Generator().manual_seed(0))
    assert sorted(samples) == sorted(names)
    assert all(samples[v].shape == (n,) and samples[v].dtype == torch.int64 for v in names)
    cell = torch.zeros(n, dtype=torch.int64)
    for v, size in zip(names, joint.shape):
        assert 0 <= samples[v].min() and samples[v].max() < size
        cell = cell * size + samples[v]
    frequency = torch.bincount(cell, minlength=joint.numel()).double() / n
    p = joint.flatten()
    assert ((frequency - p).abs() <= 5 * (p * (1 - p) / n).sqrt()).all()


def inverse_cdf_replay(network, n, seed, dtype):
    """The samples that inverse-CDF sampling must give from this generator: in topological order, one uniform of the
    tables' dtype per sample and random node, and the value min{k : F(k) >= u} (searchsorted), the last value taking
    whatever mass the table leaves out."""
    g = torch.Generator().manual_seed(seed)
    values = {}
    for name in TopologicalSorter({k: v.parents for k, v in network.items()}).static_order():
        node = network[name]
        parents = [values[p] for p in node.parents]
        if node.function is not None:
            values[name] = node.function(*parents)
            continue
        u = torch.rand(n, 1, generator=g, dtype=dtype)
        table = node.table[tuple(parents)] if parents else node.table.expand(n, -1)
        cdf = table.cumsum(-1).contiguous()
        values[name] = torch.searchsorted(cdf, u).squeeze(1).clamp_max(table.shape[-1] - 1)
    return values


@pytest.mark.parametrize("dtype", [DOUBLE, torch.float32])
def test_ancestral_draws_are_the_inverse_cdf_of_the_given_generator(dtype):
    """Draw by draw: the generator's uniforms (of the tables' dtype), and a uniform equal to F(k) gives k, not k + 1.
    The generator passed in is the only source of randomness: the global one is untouched."""
    n, seed = 200, 3
    first = torch.rand(1, generator=torch.Generator().manual_seed(seed), dtype=dtype).item()
    network = {
        "R": Node(table=torch.tensor([first, 1 - first], dtype=dtype)),  # the first draw lands exactly on F(0)
        "A": Node(table=torch.tensor([0.2, 0.5, 0.3], dtype=dtype)),
        "X": Node(("A", "R"), function=lambda a, r: (a + r) % 3),
        "Y": Node(("X",), table=torch.tensor([[0.9, 0.1], [0.25, 0.75], [0.55, 0.45]], dtype=dtype)),
        "Z": Node(("Y", "A"), table=torch.rand(2, 3, 4, generator=torch.Generator().manual_seed(1), dtype=dtype)
                  .softmax(-1)),
    }
    assert next(iter(TopologicalSorter({k: v.parents for k, v in network.items()}).static_order())) == "R"
    state = torch.get_rng_state()
    samples = ancestral_sample(network, n, torch.Generator().manual_seed(seed))
    assert torch.equal(torch.get_rng_state(), state)
    expected = inverse_cdf_replay(network, n, seed, dtype)
    assert samples["R"][0] == 0 and expected["R"][0] == 0
    for name in network:
        assert torch.equal(samples[name], expected[name]), name


def test_mass_a_table_leaves_out_goes_to_its_last_value():
    """Draws always index the table: where its cumulative sum stops short of 1, the last value takes the rest."""
    n = 20_000
    network = {"R": Node(table=torch.tensor([0.2, 0.3, 0.4], dtype=DOUBLE)),   # sums to 0.9
               "C": Node(("R",), table=torch.tensor([[0.5, 0.4], [0.1, 0.8], [0.45, 0.45]], dtype=DOUBLE))}
    samples = ancestral_sample(network, n, torch.Generator().manual_seed(4))
    expected = inverse_cdf_replay(network, n, 4, DOUBLE)
    assert torch.equal(samples["R"], expected["R"]) and torch.equal(samples["C"], expected["C"])
    assert samples["R"].max() == 2 and samples["C"].max() == 1
    assert abs((samples["R"] == 2).double().mean() - 0.5) < 5 * (0.25 / n) ** 0.5


def test_a_constant_node_selects_one_row_of_its_childrens_tables():
    """A deterministic node without parents is a constant (one value, not n): its child's table is then indexed to a
    single row, which every draw shares."""
    n = 20_000
    y_table = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]], dtype=DOUBLE)
    z_table = torch.tensor([[[0.9, 0.1], [0.2, 0.8]], [[0.7, 0.3], [0.4, 0.6]], [[0.35, 0.65], [0.5, 0.5]]],
                           dtype=DOUBLE)
    network = {"C": Node(function=lambda: torch.tensor(1)), "Y": Node(("C",), table=y_table),
               "Z": Node(("Y", "C"), table=z_table)}
    samples = ancestral_sample(network, n, torch.Generator().manual_seed(5))
    expected = inverse_cdf_replay(network, n, 5, DOUBLE)
    assert samples["C"] == 1 and torch.equal(samples["Y"], expected["Y"]) and torch.equal(samples["Z"], expected["Z"])
    frequency = torch.bincount(samples["Y"], minlength=3).double() / n
    assert ((frequency - y_table[1]).abs() < 5 * (y_table[1] * (1 - y_table[1]) / n).sqrt()).all()
    for y in range(3):
        assert abs(exact_probability(network, {"Y": y}) - y_table[1, y].item()) < 1e-16
        assert abs(exact_probability(network, {"Y": y, "Z": 1}) - (y_table[1, y] * z_table[y, 1, 1]).item()) < 1e-16
    assert exact_probability(network, {"C": 0}) == 0 and exact_probability(network, {"C": 1}) == pytest.approx(1)


@pytest.mark.parametrize("name", NETWORKS)
def test_exact_probability_is_the_einsum_of_the_tables_for_every_query(name):
    make, joint_of, names = NETWORKS[name]
    network = make()
    joint = joint_of(network)
    queries = [{}] + [{v: k} for v, size in zip(names, joint.shape) for k in range(size)]
    queries += [{u: 1, v: 0} for u in names for v in names if u != v]
    queries += [{names[0]: 1, names[2]: 2, names[3]: 1, names[4]: 0}]
    for query in queries:
        assert abs(exact_probability(network, query) - marginal(joint, names, query)) < 1e-15, query
    assert exact_probability(network, {}) == pytest.approx(1, abs=1e-15)


def test_exact_probability_of_the_notebook_query_and_of_impossible_events():
    network = student_network()
    by_hand = sum(network["D"].table[d] * network["F"].table[f] * network["G"].table[d, f, 0] * network["S"].table[f, 1]
                  for d in range(2) for f in range(2)).item()   # L = yes exactly when G = A
    assert abs(exact_probability(network, {"L": 1, "S": 1}) - by_hand) < 1e-16
    assert exact_probability(network, {"L": 1, "G": 1}) == 0 and exact_probability(network, {"L": 0, "G": 0}) == 0


def test_exact_probability_multiplies_float32_tables_in_double_precision():
    """The sum and the products are float64 whatever the tables' dtype: float32 arithmetic would be off by ~1e-8."""
    network = student_network(torch.float32)
    joint = student_joint(network)
    for query in ({"L": 1, "S": 1}, {"G": 2}, {"S": 0, "D": 1}, {"L": 0, "F": 1, "D": 0}):
        assert abs(exact_probability(network, query) - marginal(joint, "DFGSL", query)) < 1e-15, query


def test_sampled_frequency_estimates_the_exact_marginal_within_its_standard_error():
    """Notebook 01's estimate: the fraction of samples with L = 1, S = 1, within 4 standard errors of the exact sum."""
    network = student_network()
    exact = exact_probability(network, {"L": 1, "S": 1})
    n = 100_000
    samples = ancestral_sample(network, n, torch.Generator().manual_seed(1))
    estimate = ((samples["L"] == 1) & (samples["S"] == 1)).double().mean().item()
    assert abs(estimate - exact) < 4 * math.sqrt(exact * (1 - exact) / n)


# --- latent-variable models and the ELBO (notebook 02) ----------------------------------------------------------

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


class OneDimensional:
    """z ~ N(0, 1), x | z ~ N(z, 0.5^2): p(x) = N(x; 0, 1.25), p(z | x) = N(0.8 x, 0.2)."""
    x, s = 1.1, 0.5
    prior = Normal(torch.tensor(0.0, dtype=DOUBLE), torch.tensor(1.0, dtype=DOUBLE))
    posterior = Normal(torch.tensor(0.8 * 1.1, dtype=DOUBLE), torch.tensor(0.2, dtype=DOUBLE).sqrt())
    log_px = Normal(0.0, math.sqrt(1.25)).log_prob(torch.tensor(1.1, dtype=DOUBLE)).item()

    @classmethod
    def log_likelihood(cls, z):
        return Normal(z, cls.s).log_prob(torch.tensor(cls.x, dtype=DOUBLE))


SHAPE = (2, 3, 50)  # two leading axes of different sizes, K = 50 samples per estimate


def test_a_constant_likelihood_gives_its_own_value_for_every_estimate():
    """(1/K) sum_k c = c: each of the 2 x 3 estimates, whatever the samples."""
    constant = lambda z: torch.full(z.shape, -2.5, dtype=DOUBLE)  # noqa: E731
    naive = naive_log_marginal(constant, OneDimensional.prior, SHAPE)
    weighted = importance_log_marginal(constant, OneDimensional.prior, OneDimensional.prior, SHAPE)
    for estimate in (naive, weighted):
        assert estimate.shape == SHAPE[:-1] and torch.allclose(estimate, torch.tensor(-2.5, dtype=DOUBLE), atol=1e-13)


def test_importance_sampling_from_the_exact_posterior_has_zero_variance():
    """Every weight p(x | z) p(z) / p(z | x) equals p(x): each estimate is exact, for any K."""
    m = OneDimensional
    estimate = importance_log_marginal(m.log_likelihood, m.prior, m.posterior, SHAPE)
    assert estimate.shape == SHAPE[:-1] and torch.allclose(estimate, torch.tensor(m.log_px, dtype=DOUBLE), atol=1e-12)
    model = LinearGaussianModel()
    prior = MultivariateNormal(torch.zeros(model.d, dtype=DOUBLE), torch.eye(model.d, dtype=DOUBLE))
    log_likelihood = lambda z: model.log_joint(z) - prior.log_prob(z)  # noqa: E731
    estimate = importance_log_marginal(log_likelihood, prior, model.posterior(), SHAPE)
    assert estimate.shape == SHAPE[:-1] and torch.allclose(estimate, model.log_px().expand(SHAPE[:-1]), atol=1e-10)


def test_both_estimators_average_the_likelihood_over_their_own_samples():
    """Replayed from the same seed: log of the plain mean of p(x | z_k) (naive, z from the prior) and of the weights
    p(x | z_k) p(z_k) / q(z_k) (z from q), over the last axis."""
    m = OneDimensional
    proposal = Normal(torch.tensor(0.5, dtype=DOUBLE), torch.tensor(0.8, dtype=DOUBLE))
    torch.manual_seed(11)
    naive = naive_log_marginal(m.log_likelihood, m.prior, SHAPE)
    torch.manual_seed(11)
    z = m.prior.sample(SHAPE)
    assert torch.allclose(naive, m.log_likelihood(z).exp().mean(-1).log(), rtol=0, atol=1e-13)
    torch.manual_seed(12)
    weighted = importance_log_marginal(m.log_likelihood, m.prior, proposal, SHAPE)
    torch.manual_seed(12)
    z = proposal.sample(SHAPE)
    weights = m.log_likelihood(z).exp() * m.prior.log_prob(z).exp() / proposal.log_prob(z).exp()
    assert torch.allclose(weighted, weights.mean(-1).log(), rtol=0, atol=1e-13)


def test_both_estimators_are_unbiased_for_p_x():
    """E[p-hat] = p(x): the mean of exp(estimate) over 4,000 estimates within 4 standard errors of the exact p(x)."""
    m = OneDimensional
    proposal = Normal(torch.tensor(0.5, dtype=DOUBLE), torch.tensor(0.8, dtype=DOUBLE))
    torch.manual_seed(2)
    for estimate in (naive_log_marginal(m.log_likelihood, m.prior, (4000, 5)),
                     importance_log_marginal(m.log_likelihood, m.prior, proposal, (4000, 5))):
        p_hat = estimate.exp()
        assert abs(p_hat.mean() - math.exp(m.log_px)) < 4 * p_hat.std() / len(p_hat) ** 0.5


def discrete_problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    log_joint = torch.randn(2, 3, 6, generator=g, dtype=DOUBLE) - 2        # log p(x, z = k), not normalised
    log_q = torch.log_softmax(2 * torch.randn(2, 3, 6, generator=g, dtype=DOUBLE), -1)
    return log_joint, log_q


def test_discrete_elbo_is_expected_log_joint_plus_entropy_and_log_px_minus_kl():
    log_joint, log_q = discrete_problem()
    q = log_q.exp()
    elbo = discrete_elbo(log_q, log_joint)
    assert elbo.shape == (2, 3)
    assert torch.allclose(elbo, (q * log_joint).sum(-1) + Categorical(probs=q).entropy(), rtol=0, atol=1e-12)
    log_px = log_joint.exp().sum(-1).log()
    posterior = Categorical(probs=log_joint.exp() / log_joint.exp().sum(-1, keepdim=True))
    assert torch.allclose(elbo, log_px - kl_divergence(Categorical(probs=q), posterior), rtol=0, atol=1e-12)


def test_optimal_q_is_bayes_posterior_and_attains_log_px():
    log_joint, log_q = discrete_problem(1)
    q_star = optimal_q(log_joint)
    bayes = log_joint.exp() / log_joint.exp().sum(-1, keepdim=True)
    assert torch.allclose(q_star, bayes, rtol=0, atol=1e-15)
    log_px = log_joint.exp().sum(-1).log()
    assert torch.allclose(discrete_elbo(q_star.log(), log_joint), log_px, rtol=0, atol=1e-12)
    assert (discrete_elbo(log_q, log_joint) < log_px).all()


def test_the_lagrangian_is_stationary_at_q_star_with_the_multiplier():
    """d/dq_k [L(q) + lambda (sum_j q_j - 1)] = log p(x, k) - log q_k - 1 + lambda = 0 at q*: autograd, and by hand."""
    log_joint, _ = discrete_problem(2)
    lam = lagrange_multiplier(log_joint)
    assert lam.shape == (2, 3)
    assert torch.allclose(lam, 1 - log_joint.exp().sum(-1).log(), rtol=0, atol=1e-14)
    q = (log_joint.exp() / log_joint.exp().sum(-1, keepdim=True)).requires_grad_(True)
    lagrangian = discrete_elbo(q.log(), log_joint) + lam * (q.sum(-1) - 1)
    (gradient,) = torch.autograd.grad(lagrangian.sum(), q)
    assert gradient.abs().max() < 1e-12


# --- GAN theory (notebook 05) -----------------------------------------------------------------------------------

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


def entropy_on_grid(p):
    return -(torch.special.xlogy(p, p) * DX).sum()


def test_kl_on_grid_matches_the_gaussian_closed_form_and_skips_zero_mass():
    p = Normal(torch.tensor(0.3, dtype=DOUBLE), torch.tensor(0.9, dtype=DOUBLE))
    q = Normal(torch.tensor(-0.5, dtype=DOUBLE), torch.tensor(1.6, dtype=DOUBLE))
    on_grid = kl_on_grid(density(0.3, 0.9), density(-0.5, 1.6), DX)
    assert abs(on_grid - kl_divergence(p, q).item()) < 1e-8   # q's mass beyond the grid: 3e-9
    # 0 log 0 = 0: a p with zeros, dx = 1 (a discrete KL)
    p, q = torch.tensor([0.5, 0.0, 0.5, 0.0], dtype=DOUBLE), torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=DOUBLE)
    assert abs(kl_on_grid(p, q, 1.0) - (0.5 * math.log(5) + 0.5 * math.log(0.5 / 0.3))) < 1e-15
    assert abs(kl_on_grid(p, q, 0.5) - 0.5 * (0.5 * math.log(5) + 0.5 * math.log(0.5 / 0.3))) < 1e-15


def test_jsd_on_grid_is_the_entropy_of_the_mixture_minus_the_mean_entropy():
    """JSD(p || q) = H((p + q) / 2) - (H(p) + H(q)) / 2; log 2 for disjoint supports, 0 for p = q."""
    p_data, p_g = gan_data()
    expected = entropy_on_grid((p_data + p_g) / 2) - (entropy_on_grid(p_data) + entropy_on_grid(p_g)) / 2
    assert abs(jsd_on_grid(p_data, p_g, DX) - expected) < 1e-12
    assert abs(jsd_on_grid(p_g, p_data, DX) - expected) < 1e-12
    left, right = torch.tensor([0.25, 0.75, 0.0, 0.0], dtype=DOUBLE), torch.tensor([0.0, 0.0, 0.4, 0.6], dtype=DOUBLE)
    assert abs(jsd_on_grid(left, right, 1.0) - math.log(2)) < 1e-15
    assert abs(jsd_on_grid(left, left, 1.0)) < 1e-15


def test_the_value_at_the_optimal_discriminator_is_minus_log_4_plus_twice_the_jsd():
    """C3d: V at the numerically maximised D (summed here) is -log 4 + 2 JSD (entropies), minimal at p_G = p_data."""
    p_data, p_g = gan_data()
    d = newton_discriminator(p_data, p_g)
    value = ((p_data * d.log() + p_g * (1 - d).log()) * DX).sum()
    jsd = entropy_on_grid((p_data + p_g) / 2) - (entropy_on_grid(p_data) + entropy_on_grid(p_g)) / 2
    answer = value_at_optimal_discriminator(p_data, p_g, DX)
    assert abs(answer - value) < 1e-10 and abs(answer - (-math.log(4) + 2 * jsd)) < 1e-12
    assert abs(value_at_optimal_discriminator(p_data, p_data, DX) + math.log(4)) < 1e-12


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
    return (F.logsigmoid(phi(x_real) @ w) + F.logsigmoid(-(phi(a * z + c) @ w))).mean()


def autograd_gradients(w, a, c, x_real, z, features, non_saturating=False):
    """(dL/dw, dL/da, dL/dc), or those of L_G = -mean log D(G(z_i)) for the generator with non_saturating."""
    w, a, c = w.clone().requires_grad_(True), torch.tensor(a, dtype=DOUBLE, requires_grad=True), \
        torch.tensor(c, dtype=DOUBLE, requires_grad=True)
    (grad_w,) = torch.autograd.grad(objective(w, a, c, x_real, z, features), w)
    generator_loss = (-F.logsigmoid(FEATURE_SETS[features](a * z + c) @ w).mean() if non_saturating
                      else objective(w, a, c, x_real, z, features))
    grad_a, grad_c = torch.autograd.grad(generator_loss, (a, c))
    return grad_w, grad_a, grad_c


@pytest.mark.parametrize("features", FEATURE_SETS)
def test_gan_objective_is_the_mean_log_likelihood_of_real_and_fake(features):
    w, a, c, x_real, z = toy_gan(features)
    assert abs(gan_objective(w, a, c, x_real, z, features) - objective(w, a, c, x_real, z, features)) < 1e-14


@pytest.mark.parametrize("features", FEATURE_SETS)
def test_hand_gradients_match_autograd(features):
    """A11, A12, A13 for both feature maps, with hand_gradients and with the two functions it combines."""
    w, a, c, x_real, z = toy_gan(features)
    expected = autograd_gradients(w, a, c, x_real, z, features)
    expected_ns = autograd_gradients(w, a, c, x_real, z, features, non_saturating=True)
    assert torch.allclose(discriminator_gradient(w, a, c, x_real, z, features), expected[0], rtol=1e-12, atol=1e-15)
    for got, want in ((generator_gradient(w, a, c, z, features), expected[1:]),
                      (generator_gradient(w, a, c, z, features, non_saturating=True), expected_ns[1:]),
                      (hand_gradients(w, a, c, x_real, z, features)[1:], expected[1:]),
                      (hand_gradients(w, a, c, x_real, z, features, non_saturating=True)[1:], expected_ns[1:])):
        assert all(abs(g - e) < 1e-13 * max(1.0, abs(e)) for g, e in zip(got, want)), (got, want)
    assert torch.allclose(hand_gradients(w, a, c, x_real, z, features)[0], expected[0], rtol=1e-12, atol=1e-15)
    assert abs(expected_ns[2] - expected[2]) > 1e-3   # the two generator losses do differ here


def test_hand_gradients_match_central_finite_differences():
    w, a, c, x_real, z = toy_gan("quadratic", seed=1)
    grad_w, grad_a, grad_c = hand_gradients(w, a, c, x_real, z, "quadratic")
    eps = 1e-6
    for k in range(len(w)):
        e = torch.zeros_like(w)
        e[k] = eps
        difference = (objective(w + e, a, c, x_real, z, "quadratic") - objective(w - e, a, c, x_real, z, "quadratic"))
        assert abs(difference / (2 * eps) - grad_w[k]) < 1e-8
    assert abs((objective(w, a + eps, c, x_real, z, "quadratic") - objective(w, a - eps, c, x_real, z, "quadratic"))
               / (2 * eps) - grad_a) < 1e-8
    assert abs((objective(w, a, c + eps, x_real, z, "quadratic") - objective(w, a, c - eps, x_real, z, "quadratic"))
               / (2 * eps) - grad_c) < 1e-8


def test_simultaneous_step_moves_the_discriminator_up_and_the_generator_down_from_the_same_point():
    w, a, c, x_real, z = toy_gan("linear", seed=2)
    grad_w, grad_a, grad_c = autograd_gradients(w, a, c, x_real, z, "linear")
    lr = 0.03
    w_new, a_new, c_new = simultaneous_step(w, a, c, grad_w, grad_a.item(), grad_c.item(), lr)
    assert torch.allclose(w_new, w + lr * grad_w, rtol=0, atol=1e-15)
    assert abs(a_new - (a - lr * grad_a.item())) < 1e-15 and abs(c_new - (c - lr * grad_c.item())) < 1e-15
    # first order: each player's own step changes L by about +- lr |gradient|^2
    rise = objective(w_new, a, c, x_real, z, "linear") - objective(w, a, c, x_real, z, "linear")
    fall = objective(w, a_new, c_new, x_real, z, "linear") - objective(w, a, c, x_real, z, "linear")
    assert rise == pytest.approx(lr * grad_w.square().sum().item(), rel=0.1)
    assert fall == pytest.approx(-lr * (grad_a**2 + grad_c**2).item(), rel=0.1)


# --- backpropagation by hand (notebook 07) ----------------------------------------------------------------------

def random_parameters(sizes, seed):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n_out, n_in, generator=g, dtype=DOUBLE) / n_in**0.5,
             torch.randn(n_out, generator=g, dtype=DOUBLE)) for n_in, n_out in zip(sizes[:-1], sizes[1:])]


def test_linear_layer_forward_and_backward_match_autograd():
    (weight, bias), = random_parameters([4, 3], 0)
    g = torch.Generator().manual_seed(1)
    h, delta = torch.randn(5, 4, generator=g, dtype=DOUBLE), torch.randn(5, 3, generator=g, dtype=DOUBLE)
    layer = Linear(weight, bias)
    out = layer.forward(h)
    leaves = [t.clone().requires_grad_(True) for t in (h, weight, bias)]
    reference = F.linear(*leaves)
    assert torch.allclose(out, reference, rtol=0, atol=1e-14)
    grad_h, grad_weight, grad_bias = torch.autograd.grad((reference * delta).sum(), leaves)
    assert torch.allclose(layer.backward(delta), grad_h, rtol=0, atol=1e-14)
    assert torch.allclose(layer.grad_weight, grad_weight, rtol=0, atol=1e-14)
    assert torch.allclose(layer.grad_bias, grad_bias, rtol=0, atol=1e-14)


@pytest.mark.parametrize("hand, reference", [(Sigmoid, torch.sigmoid), (Tanh, torch.tanh), (ReLU, torch.relu)])
def test_activation_forward_and_backward_match_autograd(hand, reference):
    g = torch.Generator().manual_seed(2)
    a, grad = 2 * torch.randn(6, 5, generator=g, dtype=DOUBLE), torch.randn(6, 5, generator=g, dtype=DOUBLE)
    a[0, :3] = 0.0     # ReLU at 0: autograd's derivative is 0
    a[1, :3] = 0.7     # between 0 and 1
    layer = hand()
    leaf = a.clone().requires_grad_(True)
    out = reference(leaf)
    assert torch.allclose(layer.forward(a), out, rtol=0, atol=1e-15)
    (expected,) = torch.autograd.grad((out * grad).sum(), leaf)
    assert torch.allclose(layer.backward(grad), expected, rtol=0, atol=1e-15)


def test_softmax_cross_entropy_and_its_error_match_autograd():
    g = torch.Generator().manual_seed(3)
    scores, labels = 3 * torch.randn(7, 4, generator=g, dtype=DOUBLE), torch.tensor([0, 3, 3, 1, 2, 0, 3])
    criterion = SoftmaxCrossEntropy()
    leaf = scores.clone().requires_grad_(True)
    loss = F.cross_entropy(leaf, labels)
    assert abs(criterion.forward(scores, labels) - loss) < 1e-14
    assert torch.allclose(criterion.probabilities, torch.softmax(scores, -1), rtol=0, atol=1e-15)
    (expected,) = torch.autograd.grad(loss, leaf)
    assert torch.allclose(criterion.backward(), expected, rtol=0, atol=1e-15)
    assert torch.allclose(criterion.probabilities, torch.softmax(scores, -1), rtol=0, atol=1e-15)  # not changed


ACTIVATIONS = {"sigmoid": (Sigmoid, torch.sigmoid), "tanh": (Tanh, torch.tanh), "relu": (ReLU, torch.relu)}
SIZES = [6, 5, 4, 3]   # three linear layers


def mlp_problem(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(7, SIZES[0], generator=g, dtype=DOUBLE), torch.tensor([0, 2, 1, 1, 2, 0, 2])


def twin_loss(parameters, activation, x, labels):
    h = x
    for k, (w, b) in enumerate(parameters):
        h = F.linear(h, w, b)
        if k < len(parameters) - 1:
            h = activation(h)
    return F.cross_entropy(h, labels), h


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_hand_mlp_scores_loss_and_every_gradient_match_autograd(name):
    hand_activation, activation = ACTIVATIONS[name]
    parameters = random_parameters(SIZES, 4)
    x, labels = mlp_problem(5)
    net = HandMLP([(w.clone(), b.clone()) for w, b in parameters], hand_activation)
    leaves = [t.clone().requires_grad_(True) for pair in parameters for t in pair]
    loss, scores = twin_loss(list(zip(leaves[::2], leaves[1::2])), activation, x, labels)
    assert torch.allclose(net.scores(x), scores, rtol=0, atol=1e-14)
    assert abs(net.loss(x, labels) - loss) < 1e-14
    net.backward()
    expected = torch.autograd.grad(loss, leaves)
    got = net.gradients()
    assert len(got) == 6 and all(g.shape == e.shape for g, e in zip(got, expected))
    assert all(torch.allclose(g, e, rtol=0, atol=1e-14) for g, e in zip(got, expected))


def after_one_backward(activation, parameter_seed, data_seed):
    """A HandMLP on a small problem after one forward and one backward pass, with its parameters and data."""
    parameters = random_parameters(SIZES, parameter_seed)
    x, labels = mlp_problem(data_seed)
    net = HandMLP([(w.clone(), b.clone()) for w, b in parameters], activation)
    net.loss(x, labels)
    net.backward()
    return parameters, x, labels, net


def test_hand_mlp_gradients_match_central_finite_differences():
    parameters, x, labels, net = after_one_backward(Tanh, 6, 7)
    eps = 1e-6
    for linear, (grad_w, grad_b) in zip(net.linears, zip(net.gradients()[::2], net.gradients()[1::2])):
        for tensor, grad in ((linear.weight, grad_w), (linear.bias, grad_b)):
            flat, flat_grad = tensor.view(-1), grad.reshape(-1)
            for k in range(flat.numel()):
                saved = flat[k].item()
                flat[k] = saved + eps
                up = net.loss(x, labels)
                flat[k] = saved - eps
                down = net.loss(x, labels)
                flat[k] = saved
                assert abs((up - down) / (2 * eps) - flat_grad[k]) < 1e-8


def test_hand_mlp_sgd_step_is_torch_sgd():
    parameters, x, labels, net = after_one_backward(ReLU, 8, 9)
    net.sgd_step(0.2)
    leaves = [t.clone().requires_grad_(True) for pair in parameters for t in pair]
    optimizer = torch.optim.SGD(leaves, lr=0.2)
    twin_loss(list(zip(leaves[::2], leaves[1::2])), torch.relu, x, labels)[0].backward()
    optimizer.step()
    stepped = [t for linear in net.linears for t in (linear.weight, linear.bias)]
    assert all(torch.allclose(a, b, rtol=0, atol=1e-14) for a, b in zip(stepped, leaves))
    assert not torch.allclose(stepped[0], parameters[0][0])
