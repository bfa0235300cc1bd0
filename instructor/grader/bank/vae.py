"""Hidden tests of notebook 04, the VAE, first part: the densities, the estimators, the loss and the Gaussian decoder,
each answer on fresh inputs and small models built by the probe (vae_latent.py holds the rest, vae_models.py the
trained models).

Each question stands on its own. An answer that calls another question's answer runs with the reference version of
that answer in its place, applied to whatever arguments it receives (the reparameterisation with noise given in the
inputs; notebook 03's closed-form KL, so that even its stub costs nothing here): a wrong log-density of B1 costs B1,
never the ELBO estimates built on it, and a wrong call gets a wrong value. The models of the probes are linear maps
whose weights are inputs, so the checks recompute everything outside the sandbox.
"""
import math

import torch
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

from . import hidden_test
from .compare import compare
from .stand_ins import call_with_stand_ins

DOUBLE = torch.float64


# --- shared by the checks ---------------------------------------------------------------------------------------

def tiny_model(rng, pixels: int, latent: int, scale: float = 1.0) -> dict:
    """The weights of a probe's small VAE: encoder x -> (x Wm + bm, x Wv + bv), decoder logits z Wd + bd."""
    def draw(*shape, factor=1.0):
        return factor * torch.randn(*shape, generator=rng, dtype=DOUBLE)
    return {"Wm": draw(pixels, latent, factor=0.3), "bm": draw(latent, factor=0.3),
            "Wv": draw(pixels, latent, factor=0.1), "bv": draw(latent, factor=0.3) - 0.5,
            "Wd": draw(latent, pixels, factor=scale), "bd": draw(pixels, factor=0.5)}


def encode(w: dict, x):
    return x @ w["Wm"] + w["bm"], x @ w["Wv"] + w["bv"]


def binary(rng, *shape):
    return torch.bernoulli(torch.full(shape, 0.4, dtype=DOUBLE), generator=rng)


def bernoulli_log_likelihood(x, logits):
    return Independent(Bernoulli(logits=logits), 1).log_prob(x.expand_as(logits))


def standard_normal_kl(mu, logvar):
    q = Independent(Normal(mu, (0.5 * logvar).exp()), 1)
    return kl_divergence(q, Independent(Normal(torch.zeros_like(mu), 1.0), 1))


# --- B1 ---------------------------------------------------------------------------------------------------------

@hidden_test("B1", points=2)
class LogDensities:
    """`log_prior` and `log_q` against torch.distributions on fresh latent points, in 1 to 6 dimensions"""

    @staticmethod
    def inputs(rng):
        d = int(torch.randint(1, 7, (1,), generator=rng))
        return {"z": 2 * torch.randn(4, 6, d, generator=rng, dtype=DOUBLE),
                "mu": torch.randn(6, d, generator=rng, dtype=DOUBLE),
                "logvar": 1.5 * torch.randn(6, d, generator=rng, dtype=DOUBLE)}

    @staticmethod
    def probe(answers, inputs):
        z = inputs["z"]
        return {"prior": answers.log_prior(z), "q": answers.log_q(z, inputs["mu"], inputs["logvar"])}

    @staticmethod
    def check(inputs, outputs, ref):
        z, mu, logvar = inputs["z"], inputs["mu"], inputs["logvar"]
        prior = Independent(Normal(torch.zeros_like(z), 1.0), 1).log_prob(z)
        q = Independent(Normal(mu, (0.5 * logvar).exp()), 1).log_prob(z)
        return (compare(outputs["prior"], prior, "log_prior", rtol=1e-9)
                or compare(outputs["q"], q, "log_q", rtol=1e-9))


# --- C1a --------------------------------------------------------------------------------------------------------

@hidden_test("C1a", points=2)
class LogBernoulli:
    """`log_bernoulli` against torch.distributions on fresh binary images, broadcast against samples of logits, and
    at logits so large (float32) that a sigmoid rounds to 0 or 1"""

    @staticmethod
    def inputs(rng):
        return {"x": binary(rng, 5, 30), "logits": 3 * torch.randn(3, 5, 30, generator=rng, dtype=DOUBLE),
                "extreme": (40 + 40 * torch.rand(5, 30, generator=rng)) * torch.sign(torch.randn(5, 30, generator=rng))}

    @staticmethod
    def probe(answers, inputs):
        return {"moderate": answers.log_bernoulli(inputs["x"], inputs["logits"]),
                "extreme": answers.log_bernoulli(inputs["x"].float(), inputs["extreme"])}

    @staticmethod
    def check(inputs, outputs, ref):
        x = inputs["x"]
        wrong = compare(outputs["moderate"], bernoulli_log_likelihood(x, inputs["logits"]), "log p(x|z)", rtol=1e-9)
        if wrong:
            return wrong
        extreme = bernoulli_log_likelihood(x.float(), inputs["extreme"])
        return compare(outputs["extreme"], extreme, "log p(x|z) at logits of size 40 to 80 (float32)", rtol=1e-4)


# --- B2 ---------------------------------------------------------------------------------------------------------

@hidden_test("B2", points=2)
class Reparameterize:
    """`reparameterize`: shapes and dtype; mean and standard deviation of 20,000 draws; gradients of the draws
    with respect to mu and logvar"""

    @staticmethod
    def inputs(rng):
        return {"mu": 2 * torch.randn(3, 2, generator=rng, dtype=DOUBLE),
                "logvar": 2 * torch.randn(3, 2, generator=rng, dtype=DOUBLE),
                "seed": int(torch.randint(0, 2**31, (1,), generator=rng))}

    @staticmethod
    def probe(answers, inputs):
        mu, logvar = inputs["mu"], inputs["logvar"]
        one = answers.reparameterize(mu, logvar)
        torch.manual_seed(inputs["seed"])
        draws = answers.reparameterize(mu, logvar, 20_000)
        m, v = mu.clone().requires_grad_(True), logvar.clone().requires_grad_(True)
        torch.manual_seed(inputs["seed"] + 1)
        few = answers.reparameterize(m, v, 7)
        if few.requires_grad:
            grad_mu, grad_logvar = torch.autograd.grad(few.sum(), (m, v), allow_unused=True)
        else:
            grad_mu = grad_logvar = None
        return {"one_shape": list(one.shape), "draws_shape": list(draws.shape), "dtype": str(draws.dtype),
                "mean": draws.mean(0), "std": draws.std(0), "few": few.detach(),
                "grad_mu": grad_mu, "grad_logvar": grad_logvar}

    @staticmethod
    def check(inputs, outputs, ref):
        mu, logvar = inputs["mu"], inputs["logvar"]
        if outputs["one_shape"] != [3, 2] or outputs["draws_shape"] != [20_000, 3, 2]:
            return (f"reparameterize gave shapes {outputs['one_shape']} and {outputs['draws_shape']} for mu of shape "
                    "(3, 2), without and with samples=20000: expected mu's shape, and (samples, *mu.shape)")
        if outputs["dtype"] != "torch.float64":
            return f"reparameterize returned {outputs['dtype']} draws for float64 inputs: draw the noise in mu's dtype"
        std = (0.5 * logvar).exp()
        if ((torch.as_tensor(outputs["mean"], dtype=DOUBLE) - mu).abs() > 5 * std / 20_000**0.5).any():
            return "the mean of 20,000 draws is more than 5 standard errors from mu"
        wrong = compare(outputs["std"], std, "the standard deviation of 20,000 draws", rtol=0.03, atol=0)
        if wrong:
            return wrong
        if outputs["grad_mu"] is None or outputs["grad_logvar"] is None:
            return "no gradient of the draws reaches mu or logvar: compute z from mu and logvar, drawing only the noise"
        few = outputs["few"]
        return (compare(outputs["grad_mu"], torch.full_like(mu, 7.0), "d(sum of 7 draws)/dmu", rtol=1e-9)
                or compare(outputs["grad_logvar"], 0.5 * (few - mu).sum(0), "d(sum of 7 draws)/dlogvar", rtol=1e-6,
                           atol=1e-9))


def tiny_vae(weights: dict):
    """A small VAE with the given weights, exposing what the notebook's answers use of a model (encode, decoder,
    decode, likelihood). Sent to the sandbox with the probes that use it."""
    class Tiny(torch.nn.Module):
        likelihood, precision = "bernoulli", 1.0

        def encode(self, x):
            return x @ weights["Wm"] + weights["bm"], x @ weights["Wv"] + weights["bv"]

        def decoder(self, z):
            return z @ weights["Wd"] + weights["bd"]

        def decode(self, z):
            return torch.sigmoid(self.decoder(z))

    return Tiny()


def with_noise(rng, draws: int) -> dict:
    """A small fresh model, a binary minibatch and the standard normal noise of `draws` draws of q per datapoint."""
    return {**tiny_model(rng, 12, 3), "x": binary(rng, 5, 12), "eps": torch.randn(draws, 5, 3, generator=rng,
                                                                                 dtype=DOUBLE)}


def draws_of_q(inputs) -> torch.Tensor:
    mu, logvar = encode(inputs, inputs["x"])
    return mu + (0.5 * logvar).exp() * inputs["eps"]


# The reference answers that 04's estimators call, as plain code: the stand-ins for the student's own. A probe sends
# only those of questions tested before its own, as the sandbox runs a notebook's tests in one process.
def given_noise(eps):
    """The reference `reparameterize`, with the noise given."""
    def reparameterize(mu, logvar, samples=None):
        return mu + (0.5 * logvar).exp() * (eps[0] if samples is None else eps[:samples])
    return reparameterize


def reference_kl_to_standard_normal(mu, logvar):
    return 0.5 * (logvar.exp() + mu**2 - logvar - 1).sum(-1)


def reference_log_bernoulli(x, logits):
    return -torch.nn.functional.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)


def reference_log_px_bernoulli(model, x, z):
    return reference_log_bernoulli(x, model.decoder(z))


def reference_log_prior(z):
    return -0.5 * (z.square() + math.log(2 * math.pi)).sum(-1)


def reference_log_q(z, mu, logvar):
    return -0.5 * ((z - mu).square() / logvar.exp() + logvar + math.log(2 * math.pi)).sum(-1)


@hidden_test("B2", points=2, shared=(tiny_vae, given_noise, reference_kl_to_standard_normal, reference_log_bernoulli,
                                     reference_log_px_bernoulli, call_with_stand_ins))
class ElboTerms:
    """`elbo_terms` and `elbo` on a small fresh model, with the noise of q's draws given: the reconstruction term
    averaged over the draws, the KL in closed form, and their difference"""

    @staticmethod
    def inputs(rng):
        return with_noise(rng, 4)

    @staticmethod
    def probe(answers, inputs):
        model, x, eps = tiny_vae(inputs), inputs["x"], inputs["eps"]
        stand_ins = {"reparameterize": given_noise(eps), "kl_to_standard_normal": reference_kl_to_standard_normal,
                     "log_bernoulli": reference_log_bernoulli, "log_px_given_z": reference_log_px_bernoulli}
        reconstruction, kl = call_with_stand_ins(answers, "elbo_terms", stand_ins, model, x, samples=len(eps))
        elbo = call_with_stand_ins(answers, "elbo", stand_ins, model, x, samples=len(eps))
        return {"reconstruction": reconstruction, "kl": kl, "elbo": elbo}

    @staticmethod
    def check(inputs, outputs, ref):
        x = inputs["x"]
        mu, logvar = encode(inputs, x)
        reconstruction = bernoulli_log_likelihood(x, draws_of_q(inputs) @ inputs["Wd"] + inputs["bd"]).mean(0)
        kl = standard_normal_kl(mu, logvar)
        return (compare(outputs["reconstruction"], reconstruction, "the reconstruction term, given 4 draws of q",
                        rtol=1e-6)
                or compare(outputs["kl"], kl, "the KL term", rtol=1e-6)
                or compare(outputs["elbo"], reconstruction - kl, "the ELBO", rtol=1e-6))


# --- A8 ---------------------------------------------------------------------------------------------------------

@hidden_test("A8", points=2)
class GradientEstimators:
    """`score_function_gradient` and `reparameterised_gradient` for h(z) = sin(a z) + b z^2 at fresh (mu, sigma):
    every single-draw estimate, and their means over 20,000 draws against the exact gradient"""

    @staticmethod
    def inputs(rng):
        mu, sigma = (torch.randn(1, generator=rng, dtype=DOUBLE).item(),
                     0.3 + torch.rand(1, generator=rng, dtype=DOUBLE).item())
        eps = torch.randn(20_000, generator=rng, dtype=DOUBLE)
        return {"mu": mu, "sigma": sigma, "eps": eps, "z": mu + sigma * eps,
                "a": 0.5 + torch.rand(1, generator=rng, dtype=DOUBLE).item(),
                "b": torch.randn(1, generator=rng, dtype=DOUBLE).item()}

    @staticmethod
    def probe(answers, inputs):
        def h(z):
            return torch.sin(inputs["a"] * z) + inputs["b"] * z**2

        return {"score_function": answers.score_function_gradient(h, inputs["mu"], inputs["sigma"], inputs["z"]),
                "reparameterised": answers.reparameterised_gradient(h, inputs["mu"], inputs["sigma"], inputs["eps"])}

    @staticmethod
    def check(inputs, outputs, ref):
        mu, sigma, a, b, z, eps = (inputs[k] for k in ("mu", "sigma", "a", "b", "z", "eps"))
        h = torch.sin(a * z) + b * z**2
        slope = a * torch.cos(a * z) + 2 * b * z
        score = torch.stack([h * (z - mu) / sigma**2, h * ((z - mu) ** 2 / sigma**3 - 1 / sigma)])
        damping = math.exp(-a**2 * sigma**2 / 2)      # E sin(a z) = sin(a mu) exp(-a^2 sigma^2 / 2)
        exact = torch.tensor([a * math.cos(a * mu) * damping + 2 * b * mu,
                              -a**2 * sigma * math.sin(a * mu) * damping + 2 * b * sigma], dtype=DOUBLE)
        for name, got, expected in (("score-function", outputs["score_function"], score),
                                    ("reparameterised", outputs["reparameterised"], torch.stack([slope, slope * eps]))):
            wrong = compare(got, expected, f"the {name} estimate of each draw, (d/dmu, d/dsigma)", rtol=1e-6, atol=1e-9)
            if wrong:
                return wrong
            got = torch.as_tensor(got, dtype=DOUBLE)
            error = (got.mean(1) - exact).abs()
            if (error > 5 * got.std(1) / len(eps) ** 0.5).any():
                return f"the mean of 20,000 {name} estimates is more than 5 standard errors from the exact gradient"
        return None


# --- A9 ---------------------------------------------------------------------------------------------------------

@hidden_test("A9", points=2)
class VaeLoss:
    """`vae_loss` with the ELBO terms given: one number, the minibatch mean of -ELBO (value and gradient), from a
    single draw per image"""

    @staticmethod
    def inputs(rng):
        n = int(torch.randint(3, 9, (1,), generator=rng))
        return {"reconstruction": -100 * torch.rand(n, generator=rng, dtype=DOUBLE),
                "kl": 10 * torch.rand(n, generator=rng, dtype=DOUBLE), "x": binary(rng, n, 12)}

    @staticmethod
    def probe(answers, inputs):
        reconstruction = inputs["reconstruction"].clone().requires_grad_(True)
        kl = inputs["kl"].clone().requires_grad_(True)
        draws, given_model = [], torch.nn.Module()

        def given_terms(model, x, samples=1):
            draws.append(samples)
            # the reference elbo_terms applied to what it receives: other images or another model, other terms
            wrong = (x - inputs["x"]).abs().sum() + (0.0 if model is given_model else 1.0)
            return reconstruction + wrong, kl + wrong

        saved = answers.elbo_terms, answers.elbo, answers.negative_elbo
        answers.elbo_terms = given_terms
        answers.elbo = lambda model, x, samples=1: given_terms(model, x, samples)[0] - given_terms(model, x, samples)[1]
        # the loss of notebook 02 (question N): the minibatch mean, whatever the student's notebook 02 holds
        answers.negative_elbo = lambda reconstruction, kl: (kl - reconstruction).mean()
        try:
            loss = answers.vae_loss(given_model, inputs["x"].clone())
        finally:
            answers.elbo_terms, answers.elbo, answers.negative_elbo = saved
        loss = loss if isinstance(loss, torch.Tensor) else torch.tensor(float(loss))
        gradients = (torch.autograd.grad(loss, (reconstruction, kl), allow_unused=True) if loss.requires_grad
                     else (None,))
        return {"loss": loss.detach(), "shape": list(loss.shape), "draws": draws,
                "gradients": None if None in gradients else torch.stack(gradients)}

    @staticmethod
    def check(inputs, outputs, ref):
        if outputs["shape"] != []:
            return f"vae_loss returned a tensor of shape {tuple(outputs['shape'])}: the loss is one number"
        if any(d not in (1, None) for d in outputs["draws"]):
            return "vae_loss asked for more than one draw of q per image"
        reconstruction, kl = inputs["reconstruction"], inputs["kl"]
        n = len(kl)
        wrong = compare(outputs["loss"], (kl - reconstruction).mean(), "the loss", rtol=1e-9)
        if wrong:
            return wrong
        if outputs["gradients"] is None:
            return "the loss has no gradient with respect to the ELBO terms (is it detached?)"
        expected = torch.stack([-torch.ones(n, dtype=DOUBLE), torch.ones(n, dtype=DOUBLE)]) / n
        return compare(outputs["gradients"], expected,
                       "the gradient of the loss with respect to each reconstruction term and each KL", rtol=1e-9)


# --- A6 ---------------------------------------------------------------------------------------------------------

@hidden_test("A6", points=1)
class LogGaussian:
    """`log_gaussian` against torch.distributions on fresh grey images, at three precisions"""

    @staticmethod
    def inputs(rng):
        return {"x": torch.rand(4, 20, generator=rng, dtype=DOUBLE),
                "mean": torch.rand(3, 4, 20, generator=rng, dtype=DOUBLE),
                "precisions": (10 ** (4 * torch.rand(3, generator=rng, dtype=DOUBLE) - 1)).tolist()}

    @staticmethod
    def probe(answers, inputs):
        return {str(p): answers.log_gaussian(inputs["x"], inputs["mean"], p) for p in inputs["precisions"]}

    @staticmethod
    def check(inputs, outputs, ref):
        for p in inputs["precisions"]:
            expected = Independent(Normal(inputs["mean"], p**-0.5), 1).log_prob(inputs["x"].expand_as(inputs["mean"]))
            wrong = compare(outputs.get(str(p)), expected, f"log N(x; mean, I / {p:.4g})", rtol=1e-9)
            if wrong:
                return wrong
        return None


@hidden_test("A6", points=1)
class MaximumLikelihoodPrecision:
    """`ml_precision` on fresh images and means (with and without leading draws): the precision where the
    log-likelihood's derivative vanishes"""

    @staticmethod
    def inputs(rng):
        return {"x": torch.rand(6, 20, generator=rng, dtype=DOUBLE),
                "mean": torch.rand(6, 20, generator=rng, dtype=DOUBLE),
                "draws": torch.rand(3, 6, 20, generator=rng, dtype=DOUBLE)}

    @staticmethod
    def probe(answers, inputs):
        return {"plain": float(answers.ml_precision(inputs["x"], inputs["mean"])),
                "draws": float(answers.ml_precision(inputs["x"], inputs["draws"]))}

    @staticmethod
    def check(inputs, outputs, ref):
        for key in ("mean", "draws"):
            squared = (inputs["x"] - inputs[key]).square().sum(-1).mean()
            wrong = compare(outputs["plain" if key == "mean" else key], inputs["x"].shape[-1] / squared,
                            "the maximum-likelihood precision" + (" with leading draws" if key == "draws" else ""),
                            rtol=1e-9)
            if wrong:
                return wrong
        return None
