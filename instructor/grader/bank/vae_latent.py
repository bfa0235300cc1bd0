"""Hidden tests of notebook 04, the VAE, second part: the latent space (interpolation, the grid, fitting q), the ELBO
estimators and the importance-sampled log-likelihood on fresh inputs (the trained models are in vae_models.py). The
conventions are those of vae.py.
"""
import math
import types

import torch
from torch.distributions import Independent, Normal

from . import hidden_test
from .compare import compare
from .stand_ins import call_with_stand_ins
from .vae import (
    DOUBLE,
    bernoulli_log_likelihood,
    binary,
    draws_of_q,
    encode,
    given_noise,
    reference_kl_to_standard_normal,
    reference_log_bernoulli,
    reference_log_prior,
    reference_log_px_bernoulli,
    reference_log_q,
    standard_normal_kl,
    tiny_model,
    tiny_vae,
    with_noise,
)

# --- B7, B8 -----------------------------------------------------------------------------------------------------

@hidden_test("B7", points=1, shared=(tiny_vae,))
class Interpolate:
    """`interpolate` on a small fresh model: the decoded means along the segment between two encoder means"""

    @staticmethod
    def inputs(rng):
        return {**tiny_model(rng, 12, 3), "ends": binary(rng, 2, 12),
                "steps": int(torch.randint(4, 13, (1,), generator=rng))}

    @staticmethod
    def probe(answers, inputs):
        return {"path": answers.interpolate(tiny_vae(inputs), inputs["ends"][0], inputs["ends"][1], inputs["steps"])}

    @staticmethod
    def check(inputs, outputs, ref):
        start, end = encode(inputs, inputs["ends"])[0]
        t = torch.linspace(0, 1, inputs["steps"], dtype=DOUBLE)[:, None]
        expected = torch.sigmoid(((1 - t) * start + t * end) @ inputs["Wd"] + inputs["bd"])
        return compare(outputs["path"], expected, f"the {inputs['steps']} decoded points", rtol=1e-6, atol=1e-9)


@hidden_test("B8", points=1)
class LatentGrid:
    """`latent_grid` for a fresh n: the standard normal quantiles of the centres of n cells of equal mass, in the
    order asked"""

    @staticmethod
    def inputs(rng):
        return {"n": int(torch.randint(3, 12, (1,), generator=rng))}

    @staticmethod
    def probe(answers, inputs):
        return {"grid": answers.latent_grid(inputs["n"])}

    @staticmethod
    def check(inputs, outputs, ref):
        n = inputs["n"]
        quantiles = Normal(0.0, 1.0).icdf((torch.arange(n, dtype=DOUBLE) + 0.5) / n)
        expected = torch.stack([quantiles.repeat(n), quantiles.flip(0).repeat_interleave(n)], 1)
        wrong = compare(outputs["grid"], expected, f"the {n} x {n} grid", rtol=1e-5, atol=1e-6)
        if wrong and compare(sorted(torch.as_tensor(outputs["grid"], dtype=DOUBLE).tolist()), sorted(expected.tolist()),
                             "", rtol=1e-5, atol=1e-6) is None:
            return f"the points of the {n} x {n} grid are right but not in the order asked (rows from the top)"
        return wrong


# --- B10 --------------------------------------------------------------------------------------------------------

# The answers of B2, C1a and N (notebook 03) that `fit_q` calls, as plain code: the probe that sends them runs in a
# process of its own (bank.runs_alone), never beside B2's and C1a's tests.
def reparameterize_stand_in(mu, logvar, samples=None):
    shape = mu.shape if samples is None else (samples, *mu.shape)
    return mu + (0.5 * logvar).exp() * torch.randn(shape, dtype=mu.dtype)


def log_bernoulli_stand_in(x, logits):
    return -torch.nn.functional.binary_cross_entropy_with_logits(logits, x.expand_as(logits),
                                                                 reduction="none").sum(-1)


def kl_to_standard_normal_stand_in(mu, logvar):
    return 0.5 * (logvar.exp() + mu**2 - logvar - 1).sum(-1)


@hidden_test("B10", points=2, shared=(reparameterize_stand_in, log_bernoulli_stand_in, kl_to_standard_normal_stand_in))
class FitQ:
    """`fit_q` on a small fresh model with a 2-D latent: the fitted q's ELBO of the observed pixels against the best
    diagonal Gaussian's (exact by quadrature); the unobserved pixels change nothing; the model is unchanged"""

    @staticmethod
    def inputs(rng):
        weights = tiny_model(rng, 16, 2, scale=2.0)
        observed = torch.rand(16, generator=rng) < 0.5
        observed[:2], observed[2:4] = True, False
        return {**weights, "x": binary(rng, 3, 16), "observed": observed,
                "seed": int(torch.randint(0, 2**31, (1,), generator=rng))}

    @staticmethod
    def probe(answers, inputs):
        class Tiny(torch.nn.Module):
            likelihood, precision = "bernoulli", 1.0

            def __init__(self):
                super().__init__()
                self.Wd, self.bd = torch.nn.Parameter(inputs["Wd"].clone()), torch.nn.Parameter(inputs["bd"].clone())

            def decoder(self, z):
                return z @ self.Wd + self.bd

            def decode(self, z):
                return torch.sigmoid(self.decoder(z))

        saved = answers.reparameterize, answers.log_bernoulli, answers.kl_to_standard_normal
        answers.reparameterize, answers.log_bernoulli = reparameterize_stand_in, log_bernoulli_stand_in
        answers.kl_to_standard_normal = kl_to_standard_normal_stand_in
        model, x, observed = Tiny(), inputs["x"], inputs["observed"]
        start = torch.zeros(3, 2, dtype=torch.float64)
        flipped = torch.where(observed, x, 1 - x)                 # the unobserved pixels changed
        try:
            torch.manual_seed(inputs["seed"])
            first = answers.fit_q(model, x, observed, start, start, steps=150, samples=8, lr=0.05)
            # a second, finer run from the first one's result: the fit settles close to the optimum
            final = answers.fit_q(model, x, observed, first[0], first[1], steps=150, samples=16, lr=0.01)
            torch.manual_seed(inputs["seed"])
            other = answers.fit_q(model, flipped, observed, start, start, steps=150, samples=8, lr=0.05)
        finally:
            answers.reparameterize, answers.log_bernoulli, answers.kl_to_standard_normal = saved
        return {"first": [t.detach() for t in first], "final": [t.detach() for t in final],
                "flipped": [t.detach() for t in other], "start_unchanged": bool((start == 0).all()),
                "weights_unchanged": bool(torch.equal(model.Wd, inputs["Wd"]) and torch.equal(model.bd, inputs["bd"])),
                "weights_trainable": all(p.requires_grad for p in model.parameters())}

    @staticmethod
    def check(inputs, outputs, ref):
        if not outputs["weights_unchanged"] or not outputs["weights_trainable"] or not outputs["start_unchanged"]:
            return ("fit_q changed the model (its weights, or whether they train) or its starting point: only q's mean "
                    "and log-variance may move, on copies")
        mu, logvar = (torch.as_tensor(t, dtype=DOUBLE) for t in outputs["final"])
        if mu.shape != (3, 2) or logvar.shape != (3, 2):
            return (f"fit_q returned a mean and a log-variance of shapes {tuple(mu.shape)} and {tuple(logvar.shape)}, "
                    "not (3, 2)")
        if not (torch.isfinite(mu).all() and torch.isfinite(logvar).all()):
            return "fit_q returned a mean or log-variance that is not finite"
        if any(not isinstance(outputs[k], list) or len(outputs[k]) != 2 for k in ("first", "flipped")):
            return "fit_q did not return a tuple of the mean and the log-variance"
        if any(compare(a, b, "", rtol=1e-6, atol=1e-8) for a, b in zip(outputs["flipped"], outputs["first"],
                                                                          strict=True)):
            return "the fitted q depends on the unobserved pixels: the likelihood must use only the observed ones"
        best = exact_observed_elbo(inputs, *best_diagonal_gaussian(inputs))
        shortfall = (best - exact_observed_elbo(inputs, mu, logvar)).max().item()
        if shortfall > 0.05:
            return (f"the fitted q's ELBO of the observed pixels is {shortfall:.3g} nats below the best diagonal "
                    "Gaussian's (0.05 allowed): check the objective (the KL minus the log-likelihood of the observed "
                    "pixels) and its sign")
        return None


def exact_observed_elbo(inputs, mu, logvar, nodes: int = 30):
    """The ELBO of the observed pixels of the probe's model for q = N(mu, diag exp(logvar)), 2-D, per image, with the
    expectation by Gauss-Hermite quadrature (exact to far below the tolerances here)."""
    import numpy as np

    points, weights = (torch.as_tensor(a, dtype=DOUBLE) for a in np.polynomial.hermite.hermgauss(nodes))
    t1, t2 = torch.meshgrid(points, points, indexing="ij")
    grid = math.sqrt(2) * torch.stack([t1.reshape(-1), t2.reshape(-1)], 1)
    mass = (weights[:, None] * weights[None, :]).reshape(-1) / math.pi
    z = mu + (0.5 * logvar).exp() * grid[:, None, :]
    observed = inputs["observed"]
    likelihood = bernoulli_log_likelihood(inputs["x"][:, observed], (z @ inputs["Wd"] + inputs["bd"])[..., observed])
    return (mass[:, None] * likelihood).sum(0) - 0.5 * (logvar.exp() + mu**2 - logvar - 1).sum(-1)


def best_diagonal_gaussian(inputs):
    """The mean and log-variance that maximise `exact_observed_elbo`, by L-BFGS on the deterministic objective."""
    mu = torch.zeros(3, 2, dtype=DOUBLE, requires_grad=True)
    logvar = torch.zeros(3, 2, dtype=DOUBLE, requires_grad=True)
    optimizer = torch.optim.LBFGS([mu, logvar], max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = -exact_observed_elbo(inputs, mu, logvar).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return mu.detach(), logvar.detach()


# --- C1e --------------------------------------------------------------------------------------------------------

ESTIMATE_STAND_INS = (tiny_vae, given_noise, reference_kl_to_standard_normal, reference_log_bernoulli,
                      reference_log_px_bernoulli, reference_log_prior, reference_log_q, call_with_stand_ins)


@hidden_test("C1e", points=2, shared=ESTIMATE_STAND_INS)
class ElboEstimates:
    """`elbo_estimates` on a small fresh model, with the noise of q's draws given: with the closed-form KL and with
    the KL of each draw"""

    @staticmethod
    def inputs(rng):
        return with_noise(rng, 6)

    @staticmethod
    def probe(answers, inputs):
        model, x, eps = tiny_vae(inputs), inputs["x"], inputs["eps"]
        stand_ins = {"reparameterize": given_noise(eps), "kl_to_standard_normal": reference_kl_to_standard_normal,
                     "log_bernoulli": reference_log_bernoulli, "log_px_given_z": reference_log_px_bernoulli,
                     "log_prior": reference_log_prior, "log_q": reference_log_q}
        closed, sampled = call_with_stand_ins(answers, "elbo_estimates", stand_ins, model, x, len(eps))
        return {"closed": closed, "sampled": sampled}

    @staticmethod
    def check(inputs, outputs, ref):
        x, z = inputs["x"], draws_of_q(inputs)
        mu, logvar = encode(inputs, x)
        log_px = bernoulli_log_likelihood(x, z @ inputs["Wd"] + inputs["bd"])
        prior = Independent(Normal(torch.zeros_like(z), 1.0), 1).log_prob(z)
        q = Independent(Normal(mu, (0.5 * logvar).exp()), 1).log_prob(z)
        return (compare(outputs["closed"], log_px - standard_normal_kl(mu, logvar),
                        "the estimates with the closed-form KL", rtol=1e-6)
                or compare(outputs["sampled"], log_px + prior - q, "the estimates with the KL of each draw", rtol=1e-6))


# --- C2 ---------------------------------------------------------------------------------------------------------

def reference_log_gaussian(x, mean, precision):
    return 0.5 * x.shape[-1] * math.log(precision / (2 * math.pi)) - 0.5 * precision * (x - mean).square().sum(-1)


def reference_log_px_gaussian(model, x, z):
    return reference_log_gaussian(x, torch.sigmoid(model.decoder(z)), model.precision)


@hidden_test("C2a-C2e", points=3, shared=(reference_log_gaussian, reference_log_px_gaussian, reference_log_prior,
                                          reference_log_q, call_with_stand_ins))
class ImportanceSampledLogLikelihood:
    """`log_likelihood` on a linear-Gaussian model, where log p(x) is exact, with the noise of 2,500 draws of a poor
    proposal given, in chunks of 1,000: the importance-sampled estimate from exactly these draws"""

    @staticmethod
    def inputs(rng):
        W = 0.02 * torch.randn(6, 2, generator=rng, dtype=DOUBLE)
        b = torch.full((6,), 0.5, dtype=DOUBLE)
        noise = 0.5 * torch.randn(4, 6, generator=rng, dtype=DOUBLE)
        x = torch.randn(4, 2, generator=rng, dtype=DOUBLE) @ W.T + b + noise
        A = 0.5 * W.T
        logvar = 0.6 * torch.rand(2, generator=rng, dtype=DOUBLE) - 0.2       # a proposal wider or narrower than p(z|x)
        return {"W": W, "b": b, "A": A, "logvar": logvar, "x": x,
                "eps": torch.randn(2500, 4, 2, generator=rng, dtype=DOUBLE)}

    @staticmethod
    def probe(answers, inputs):
        class LinearGaussian(torch.nn.Module):
            likelihood, precision = "gaussian", 4.0

            def decoder(self, z):
                return torch.logit(z @ inputs["W"].T + inputs["b"])     # the sigmoid of log_px_given_z undoes it

            def encode(self, x):
                return x @ inputs["A"].T, inputs["logvar"].expand(len(x), -1)

        eps, served = inputs["eps"], [0]

        def reparameterize(mu, logvar, samples=None):       # the reference, with the noise given in turn
            count = 1 if samples is None else samples
            chunk = eps[served[0]:served[0] + count]
            served[0] += count
            return mu + (0.5 * logvar).exp() * (chunk if samples is not None else chunk[0])

        stand_ins = {"reparameterize": reparameterize, "log_gaussian": reference_log_gaussian,
                     "log_px_given_z": reference_log_px_gaussian, "log_prior": reference_log_prior,
                     "log_q": reference_log_q}
        estimate = call_with_stand_ins(answers, "log_likelihood", stand_ins, LinearGaussian(), inputs["x"], k=2500,
                                       chunk=1000)
        return {"estimate": estimate, "served": served[0]}

    @staticmethod
    def check(inputs, outputs, ref):
        W, b, x = inputs["W"], inputs["b"], inputs["x"]
        if outputs["served"] != 2500:
            return f"log_likelihood drew {outputs['served']} samples of q with k = 2500 (and chunk = 1000)"
        mu, logvar = x @ inputs["A"].T, inputs["logvar"].expand(len(x), -1)
        z = mu + (0.5 * logvar).exp() * inputs["eps"]
        log_px_z = Independent(Normal(z @ W.T + b, 0.5), 1).log_prob(x)
        prior = Independent(Normal(torch.zeros_like(z), 1.0), 1).log_prob(z)
        q = Independent(Normal(mu, (0.5 * logvar).exp()), 1).log_prob(z)
        estimate = torch.logsumexp(log_px_z + prior - q, 0) - math.log(len(z))
        # the draws estimate the exact log p(x), N(x; b, W W^T + I / 4), to within 0.021 nats on 2,000 seeds tried: a
        # wrong estimator is told apart from a right one by the same draws, exactly, not by its distance to log p(x)
        return compare(outputs["estimate"], estimate, "log p(x) from the 2,500 given draws", rtol=1e-6)


# --- a wrong answer per question, for instructor/tests/test_bank.py ------------------------------------------------

ANSWERS = {"B1": ("log_prior", "log_q"), "C1a": ("log_bernoulli",), "B2": ("reparameterize", "elbo_terms", "elbo"),
           "A8": ("score_function_gradient", "reparameterised_gradient"), "A9": ("vae_loss",),
           "A6": ("log_gaussian", "ml_precision"), "B7": ("interpolate",), "B8": ("latent_grid",), "B10": ("fit_q",),
           "C1e": ("elbo_estimates",), "C2a-C2e": ("log_likelihood",)}


def perturbed(value):
    """Every number of an output moved by 10% and 0.25 (tensors, numbers, tuples and lists of them)."""
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value * 1.1 + 0.25
    if isinstance(value, float):
        return value * 1.1 + 0.25
    if isinstance(value, list | tuple):
        return type(value)(perturbed(v) for v in value)
    return value


def plant(question: str):
    """A function that makes `question`'s answers wrong in a copy of the answer module, the way a student's wrong
    answer is wrong: the answers of other questions that call them get the wrong outputs too."""
    def wrong(module):
        namespace = vars(module)
        for name, value in list(namespace.items()):     # the copy's functions read the copy's names
            if isinstance(value, types.FunctionType) and value.__globals__ is not namespace and \
                    value.__globals__.get("__name__") == namespace.get("__name__"):
                namespace[name] = types.FunctionType(value.__code__, namespace, value.__name__, value.__defaults__,
                                                     value.__closure__)
        for name in ANSWERS[question]:
            namespace[name] = (lambda f: lambda *a, **k: perturbed(f(*a, **k)))(namespace[name])
    return wrong


PLANTED = {question: plant(question) for question in ANSWERS}
