"""Hidden tests of notebook 02, latent-variable models and the ELBO: the estimators of p(x), the linear-Gaussian
posterior and ELBO, the optimal discrete q and its multiplier, and a VAE's per-datapoint and minibatch losses, on fresh
inputs against routes of the grader's own (Gaussian conditioning, torch.distributions, logsumexp)."""
import math

import torch
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence

from . import hidden_test
from .compare import DETAIL, compare, random_covariances

DOUBLE = torch.float64


def linear_gaussian(rng, D: int, d: int) -> dict:
    """A fresh linear-Gaussian model z ~ N(0, I_d), x | z ~ N(W z + b, s^2 I_D), as plain data."""
    return {"W": torch.randn(D, d, generator=rng, dtype=DOUBLE), "b": torch.randn(D, generator=rng, dtype=DOUBLE),
            "s": 0.3 + 1.2 * torch.rand((), generator=rng, dtype=DOUBLE).item()}


def observe(rng, model: dict, *batch) -> torch.Tensor:
    D, d = model["W"].shape
    z = torch.randn(*batch, d, generator=rng, dtype=DOUBLE)
    return z @ model["W"].T + model["b"] + model["s"] * torch.randn(*batch, D, generator=rng, dtype=DOUBLE)


def conditioned(model: dict, x: torch.Tensor) -> MultivariateNormal:
    """p(z | x) by Gaussian conditioning of the joint of (z, x): mean W^T S^-1 (x - b), covariance I - W^T S^-1 W,
    with S = W W^T + s^2 I the covariance of x (the independent route)."""
    W, b, s = model["W"], model["b"], model["s"]
    S = W @ W.T + s**2 * torch.eye(W.shape[0], dtype=DOUBLE)
    mean = torch.linalg.solve(S, (x - b).unsqueeze(-1)).squeeze(-1) @ W
    covariance = torch.eye(W.shape[1], dtype=DOUBLE) - W.T @ torch.linalg.solve(S, W)
    return MultivariateNormal(mean, 0.5 * (covariance + covariance.T))


def log_evidence(model: dict, x: torch.Tensor) -> torch.Tensor:
    W, b, s = model["W"], model["b"], model["s"]
    return MultivariateNormal(b, W @ W.T + s**2 * torch.eye(W.shape[0], dtype=DOUBLE)).log_prob(x)


def gaussian_log_likelihood(model: dict, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return Normal(z @ model["W"].T + model["b"], model["s"]).log_prob(x).sum(-1)


@hidden_test("A2", points=1)
class NaiveLogMarginal:
    """`naive_log_marginal` on fresh samples of the prior, one estimate per leading index, also with likelihoods 900
    nats below 0, against the grader's log-mean-exp"""

    @staticmethod
    def inputs(rng):
        model = linear_gaussian(rng, 3, 2)
        return {"model": model, "x": observe(rng, model), "z": torch.randn(3, 4, 30, 2, generator=rng, dtype=DOUBLE)}

    @staticmethod
    def probe(answers, inputs):
        m = inputs["model"]

        def log_likelihood(z):
            return torch.distributions.Normal(z @ m["W"].T + m["b"], m["s"]).log_prob(inputs["x"]).sum(-1)

        return {"plain": answers.naive_log_marginal(log_likelihood, inputs["z"]),
                "far_below": answers.naive_log_marginal(lambda z: log_likelihood(z) - 900.0, inputs["z"])}

    @staticmethod
    def check(inputs, outputs, ref):
        log_lik = gaussian_log_likelihood(inputs["model"], inputs["x"], inputs["z"])
        expected = torch.logsumexp(log_lik, -1) - math.log(inputs["z"].shape[-2])
        return (compare(outputs["plain"], expected, "log p-hat(x) from prior samples", rtol=1e-9)
                or compare(outputs["far_below"], expected - 900.0,
                           "log p-hat(x) with likelihoods 900 nats below 0 (exp underflows: stay in log space)",
                           rtol=1e-9))


@hidden_test("A2", points=1)
class ImportanceLogMarginal:
    """`importance_log_marginal` on fresh samples of a fresh Gaussian proposal, one estimate per leading index, against
    the grader's log-mean-exp of the importance weights"""

    @staticmethod
    def inputs(rng):
        model = linear_gaussian(rng, 4, 3)
        mean = torch.randn(3, generator=rng, dtype=DOUBLE)
        covariance = random_covariances(rng, 1, 3)[0]
        z = mean + torch.randn(2, 5, 40, 3, generator=rng, dtype=DOUBLE) @ torch.linalg.cholesky(covariance).T
        return {"model": model, "x": observe(rng, model), "mean": mean, "covariance": covariance, "z": z}

    @staticmethod
    def probe(answers, inputs):
        m = inputs["model"]

        def log_likelihood(z):
            return torch.distributions.Normal(z @ m["W"].T + m["b"], m["s"]).log_prob(inputs["x"]).sum(-1)

        prior = torch.distributions.MultivariateNormal(torch.zeros(3, dtype=torch.float64),
                                                       torch.eye(3, dtype=torch.float64))
        proposal = torch.distributions.MultivariateNormal(inputs["mean"], inputs["covariance"])
        return {"estimates": answers.importance_log_marginal(log_likelihood, prior, proposal, inputs["z"])}

    @staticmethod
    def check(inputs, outputs, ref):
        z = inputs["z"]
        prior = MultivariateNormal(torch.zeros(3, dtype=DOUBLE), torch.eye(3, dtype=DOUBLE))
        proposal = MultivariateNormal(inputs["mean"], inputs["covariance"])
        log_lik = gaussian_log_likelihood(inputs["model"], inputs["x"], z)
        log_weights = log_lik + prior.log_prob(z) - proposal.log_prob(z)
        expected = torch.logsumexp(log_weights, -1) - math.log(z.shape[-2])
        return compare(outputs["estimates"], expected, "log p-hat(x) by importance sampling", rtol=1e-9)


@hidden_test("A5", points=2)
class LinearGaussianPosterior:
    """`linear_gaussian_posterior` for fresh models of three sizes, against Gaussian conditioning of the joint"""

    @staticmethod
    def inputs(rng):
        cases = {}
        for D, d in ((4, 2), (6, 3), (3, 1)):
            model = linear_gaussian(rng, D, d)
            cases[f"{D}x{d}"] = {**model, "x": observe(rng, model)}
        return cases

    @staticmethod
    def probe(answers, inputs):
        out = {}
        for name, c in inputs.items():
            posterior = answers.linear_gaussian_posterior(c["x"], c["W"], c["b"], c["s"])
            out[name] = {"mean": posterior.mean, "covariance": posterior.covariance_matrix}
        return out

    @staticmethod
    def check(inputs, outputs, ref):
        for name, c in inputs.items():
            expected = conditioned(c, c["x"])
            wrong = (compare(outputs[name]["covariance"], expected.covariance_matrix,
                             f"the posterior covariance (D, d = {name.replace('x', ', ')})", rtol=1e-7, atol=1e-10)
                     or compare(outputs[name]["mean"], expected.mean,
                                f"the posterior mean (D, d = {name.replace('x', ', ')})", rtol=1e-7, atol=1e-10))
            if wrong:
                return wrong
        return None


@hidden_test("A5", points=1)
class LinearGaussianPosteriorBatch:
    """`linear_gaussian_posterior` for a batch of 5 fresh observations (x of shape (5, D)): one posterior per row"""

    @staticmethod
    def inputs(rng):
        model = linear_gaussian(rng, 5, 2)
        return {**model, "x": observe(rng, model, 5)}

    @staticmethod
    def probe(answers, inputs):
        posterior = answers.linear_gaussian_posterior(inputs["x"], inputs["W"], inputs["b"], inputs["s"])
        return {"mean": posterior.mean, "covariance": posterior.covariance_matrix}

    @staticmethod
    def check(inputs, outputs, ref):
        expected = conditioned(inputs, inputs["x"])
        return (compare(outputs["mean"], expected.mean, "the posterior means of a batch of observations",
                        rtol=1e-7, atol=1e-10)
                or compare(outputs["covariance"], expected.covariance_matrix,
                           "the posterior covariances of a batch of observations", rtol=1e-7, atol=1e-10))


@hidden_test("A5", points=2)
class LinearGaussianELBO:
    """`linear_gaussian_elbo` of a batch of 6 fresh Gaussians q on a fresh model, against log p(x) - KL(q || p(z | x))
    computed by the grader with torch.distributions"""

    @staticmethod
    def inputs(rng):
        model = linear_gaussian(rng, 5, 3)
        return {**model, "x": observe(rng, model), "mean": 2 * torch.randn(6, 3, generator=rng, dtype=DOUBLE),
                "covariance": random_covariances(rng, 6, 3)}

    @staticmethod
    def probe(answers, inputs):
        q = torch.distributions.MultivariateNormal(inputs["mean"], inputs["covariance"])
        one = torch.distributions.MultivariateNormal(inputs["mean"][0], inputs["covariance"][0])
        return {"batch": answers.linear_gaussian_elbo(inputs["x"], q, inputs["W"], inputs["b"], inputs["s"]),
                "one": answers.linear_gaussian_elbo(inputs["x"], one, inputs["W"], inputs["b"], inputs["s"])}

    @staticmethod
    def check(inputs, outputs, ref):
        q = MultivariateNormal(inputs["mean"], inputs["covariance"])
        expected = log_evidence(inputs, inputs["x"]) - kl_divergence(q, conditioned(inputs, inputs["x"]))
        return (compare(outputs["batch"], expected, "the ELBO of 6 Gaussians q", rtol=1e-7, atol=1e-9)
                or compare(outputs["one"], expected[0], "the ELBO of one Gaussian q", rtol=1e-7, atol=1e-9))


def closed_form_elbo(model: dict, x: torch.Tensor, mean: torch.Tensor, covariance: torch.Tensor) -> torch.Tensor:
    """The ELBO of q = N(mean, covariance) on the linear-Gaussian model, term by term: E_q log p(x | z) + E_q log p(z)
    + the entropy of q (the grader's route for C1c, free of any KL)."""
    W, b, s = model["W"], model["b"], model["s"]
    D, d = W.shape
    residual = x - mean @ W.T - b
    spread = torch.einsum("ij,...jk,ik->...", W, covariance, W)
    likelihood = -0.5 * D * math.log(2 * math.pi * s**2) - (residual.square().sum(-1) + spread) / (2 * s**2)
    prior = -0.5 * d * math.log(2 * math.pi) - 0.5 * (mean.square().sum(-1) + covariance.diagonal(0, -2, -1).sum(-1))
    entropy = 0.5 * d * (1 + math.log(2 * math.pi)) + 0.5 * torch.logdet(covariance)
    return likelihood + prior + entropy


@hidden_test("C1c", points=1)
class ElboGap:
    """`elbo_gap` of a batch of 5 fresh Gaussians q and of one, with the posterior of a fresh model, against
    log p(x) minus the ELBO, each computed by the grader term by term"""

    @staticmethod
    def inputs(rng):
        model = linear_gaussian(rng, 4, 3)
        x = observe(rng, model)
        posterior = conditioned(model, x)
        return {**model, "x": x, "mean": 1.5 * torch.randn(5, 3, generator=rng, dtype=DOUBLE),
                "covariance": random_covariances(rng, 5, 3), "posterior_mean": posterior.mean,
                "posterior_covariance": posterior.covariance_matrix}

    @staticmethod
    def probe(answers, inputs):
        MultivariateNormal = torch.distributions.MultivariateNormal
        posterior = MultivariateNormal(inputs["posterior_mean"], inputs["posterior_covariance"])
        return {"batch": answers.elbo_gap(MultivariateNormal(inputs["mean"], inputs["covariance"]), posterior),
                "one": answers.elbo_gap(MultivariateNormal(inputs["mean"][0], inputs["covariance"][0]), posterior)}

    @staticmethod
    def check(inputs, outputs, ref):
        expected = log_evidence(inputs, inputs["x"]) - closed_form_elbo(inputs, inputs["x"], inputs["mean"],
                                                                         inputs["covariance"])
        return (compare(outputs["batch"], expected, "log p(x) - ELBO(q) for 5 Gaussians q", rtol=1e-7, atol=1e-9)
                or compare(outputs["one"], expected[0], "log p(x) - ELBO(q) for one Gaussian q", rtol=1e-7,
                           atol=1e-9))


def log_joints(rng) -> torch.Tensor:
    """Fresh log p(x, z = k) of a discrete latent with 7 values, for a 4 x 3 batch of observations."""
    return 3 * torch.randn(4, 3, 7, generator=rng, dtype=DOUBLE) - 5


@hidden_test("C1i", points=1)
class OptimalQ:
    """`optimal_q` for fresh log-joints (a 4 x 3 batch of 7 values), against Bayes' posterior computed by the grader"""

    @staticmethod
    def inputs(rng):
        return {"log_joint": log_joints(rng)}

    @staticmethod
    def probe(answers, inputs):
        return {"q": answers.optimal_q(inputs["log_joint"])}

    @staticmethod
    def check(inputs, outputs, ref):
        joint = inputs["log_joint"].exp()
        return compare(outputs["q"], joint / joint.sum(-1, keepdim=True), "the optimal q", rtol=1e-9, atol=1e-12)


@hidden_test("C1j", points=1)
class LagrangeMultiplier:
    """`lagrange_multiplier` for fresh log-joints (a 4 x 3 batch of 7 values), against the multiplier that makes the
    Lagrangian stationary at Bayes' posterior"""

    @staticmethod
    def inputs(rng):
        return {"log_joint": log_joints(rng)}

    @staticmethod
    def probe(answers, inputs):
        return {"lambda": answers.lagrange_multiplier(inputs["log_joint"])}

    @staticmethod
    def check(inputs, outputs, ref):
        log_joint = inputs["log_joint"]
        posterior = log_joint.exp() / log_joint.exp().sum(-1, keepdim=True)
        # d/dq_k [sum_j q_j (l_j - log q_j)] = l_k - log q_k - 1, the same for every k at the posterior; lambda = -that
        expected = -(log_joint - posterior.log() - 1)[..., 0]
        return compare(outputs["lambda"], expected, "lambda", rtol=1e-9, atol=1e-12)


@hidden_test("A7", points=2)
class PerDatapointLoss:
    """`per_datapoint_loss` on a fresh batch of 6 datapoints of a linear-Gaussian decoder, with fresh encoder outputs
    and samples, against the one-sample estimators of Kingma and Welling (2014), the KL in closed form or not"""

    @staticmethod
    def inputs(rng):
        model = linear_gaussian(rng, 4, 2)
        mu = torch.randn(6, 2, generator=rng, dtype=DOUBLE)
        logvar = torch.randn(6, 2, generator=rng, dtype=DOUBLE)
        z = mu + (0.5 * logvar).exp() * torch.randn(6, 2, generator=rng, dtype=DOUBLE)
        return {"model": model, "x": observe(rng, model, 6), "z": z, "mu": mu, "logvar": logvar}

    @staticmethod
    def probe(answers, inputs):
        m = inputs["model"]

        def log_likelihood(x, z):
            return torch.distributions.Normal(z @ m["W"].T + m["b"], m["s"]).log_prob(x).sum(-1)

        return {"loss": answers.per_datapoint_loss(inputs["x"], inputs["z"], inputs["mu"], inputs["logvar"],
                                                   log_likelihood)}

    @staticmethod
    def check(inputs, outputs, ref):
        mu, logvar, z = inputs["mu"], inputs["logvar"], inputs["z"]
        q = Independent(Normal(mu, (0.5 * logvar).exp()), 1)
        prior = Independent(Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1)
        reconstruction = gaussian_log_likelihood(inputs["model"], inputs["x"], z)
        closed_form = -reconstruction + kl_divergence(q, prior)
        sampled = -reconstruction - prior.log_prob(z) + q.log_prob(z)
        wrong = compare(outputs["loss"], closed_form, "the loss per datapoint", rtol=1e-7, atol=1e-9)
        if wrong is None or compare(outputs["loss"], sampled, "", rtol=1e-7, atol=1e-9) is None:
            return None            # the KL in closed form, or every term from the one sample: both are unbiased
        head, _, detail = wrong.partition(DETAIL)
        return head + " (with the KL in closed form or estimated from the sample)" + (DETAIL + detail if detail else "")


@hidden_test("N", points=1)
class NegativeElbo:
    """`negative_elbo` on fresh reconstruction and KL terms of minibatches of 8 and of 3 datapoints"""

    @staticmethod
    def inputs(rng):
        return {"8": {"reconstruction": -50 * torch.rand(8, generator=rng, dtype=DOUBLE),
                      "kl": 10 * torch.rand(8, generator=rng, dtype=DOUBLE)},
                "3": {"reconstruction": -50 * torch.rand(3, generator=rng, dtype=DOUBLE),
                      "kl": 10 * torch.rand(3, generator=rng, dtype=DOUBLE)}}

    @staticmethod
    def probe(answers, inputs):
        return {size: answers.negative_elbo(c["reconstruction"], c["kl"]) for size, c in inputs.items()}

    @staticmethod
    def check(inputs, outputs, ref):
        for size, c in inputs.items():
            wrong = compare(outputs[size], (c["kl"] - c["reconstruction"]).mean(),
                            f"the loss of a minibatch of {size}", rtol=1e-9)
            if wrong:
                return wrong
        return None
