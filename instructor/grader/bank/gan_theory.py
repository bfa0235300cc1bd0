"""Hidden tests of notebook 05, GAN theory, first part: the value function, the optimal discriminator, the value at
the optimum and the non-saturating criterion, each against an independent formula on fresh inputs (the hand-derived
gradients are in gan_theory_gradients.py).

Answers that call another question's functions (C3d and A17 may call C3b-C3d) run with the reference answers in place
of those functions, applied to whatever arguments they receive: a wrong answer elsewhere never costs these questions
their points, and a wrong call gets a wrong value.
"""
import math

import torch
import torch.nn.functional as F

from . import hidden_test
from .compare import compare
from .stand_ins import call_with_stand_ins

DOUBLE = torch.float64


@hidden_test("C3a", points=1)
class GanValue:
    """`gan_value` on fresh samples and a fresh logistic D and affine G, against the log-likelihood of the labels"""

    @staticmethod
    def inputs(rng):
        return {"x_real": 1.0 + torch.randn(300, generator=rng, dtype=DOUBLE),
                "z": torch.randn(200, generator=rng, dtype=DOUBLE),
                "d": torch.randn(2, generator=rng, dtype=DOUBLE), "g": 0.5 + torch.rand(2, generator=rng, dtype=DOUBLE)}

    @staticmethod
    def probe(answers, inputs):
        d, g = inputs["d"], inputs["g"]
        value = answers.gan_value(lambda x: torch.sigmoid(d[0] + d[1] * x), lambda z: g[0] + g[1] * z,
                                  inputs["x_real"], inputs["z"])
        return {"value": value}

    @staticmethod
    def check(inputs, outputs, ref):
        d, g = inputs["d"], inputs["g"]
        fake = g[0] + g[1] * inputs["z"]
        expected = F.logsigmoid(d[0] + d[1] * inputs["x_real"]).mean() + F.logsigmoid(-(d[0] + d[1] * fake)).mean()
        return compare(outputs["value"], expected, "V(D, G) from samples", rtol=1e-6)


@hidden_test("C3b", points=1)
class ValueOnGrid:
    """`value_on_grid` on fresh grid values of D, p_data and p_G and a fresh spacing, against the Riemann sum"""

    @staticmethod
    def inputs(rng):
        return {"d": 0.02 + 0.96 * torch.rand(400, generator=rng, dtype=DOUBLE),
                "p_data": torch.rand(400, generator=rng, dtype=DOUBLE),
                "p_model": 2 * torch.rand(400, generator=rng, dtype=DOUBLE),
                "dx": 0.01 + 0.05 * torch.rand((), generator=rng, dtype=DOUBLE).item()}

    @staticmethod
    def probe(answers, inputs):
        return {"value": answers.value_on_grid(inputs["d"], inputs["p_data"], inputs["p_model"], inputs["dx"])}

    @staticmethod
    def check(inputs, outputs, ref):
        d = inputs["d"]
        expected = sum(pd * math.log(v) + pm * math.log(1 - v) for v, pd, pm in
                       zip(d.tolist(), inputs["p_data"].tolist(), inputs["p_model"].tolist())) * inputs["dx"]
        return compare(outputs["value"], expected, "V(D, G) on the grid", rtol=1e-6)


@hidden_test("C3c", points=1)
class OptimalDiscriminator:
    """`optimal_discriminator` on fresh density values, against the pointwise maximiser of the integrand"""

    @staticmethod
    def inputs(rng):
        return {"p_data": torch.rand(500, generator=rng, dtype=DOUBLE) * 2,
                "p_model": torch.rand(500, generator=rng, dtype=DOUBLE)}

    @staticmethod
    def probe(answers, inputs):
        return {"d": answers.optimal_discriminator(inputs["p_data"], inputs["p_model"])}

    @staticmethod
    def check(inputs, outputs, ref):
        # logit D* = log p_data - log p_G: where a log y + b log(1 - y) has zero derivative in the logit
        expected = torch.sigmoid(inputs["p_data"].log() - inputs["p_model"].log())
        return compare(outputs["d"], expected, "D*", rtol=1e-9)


def _grid_pairs(rng, count, zeros=False):
    """`count` pairs of normalised densities (two-component Gaussian mixtures) on a grid; with zeros, p_model is 0
    beyond a fresh cut-off."""
    x = torch.linspace(-9, 9, 1801, dtype=DOUBLE)
    dx = (x[1] - x[0]).item()
    pairs = []
    for k in range(count):
        densities = []
        for _ in range(2):
            means = 4 * torch.rand(2, generator=rng, dtype=DOUBLE) - 2
            spreads = 0.5 + torch.rand(2, generator=rng, dtype=DOUBLE)
            weight = 0.2 + 0.6 * torch.rand((), generator=rng, dtype=DOUBLE)
            p = (weight * torch.exp(-0.5 * ((x - means[0]) / spreads[0]) ** 2) / spreads[0]
                 + (1 - weight) * torch.exp(-0.5 * ((x - means[1]) / spreads[1]) ** 2) / spreads[1])
            densities.append(p)
        p_data, p_model = densities
        if zeros and k == 0:
            p_model = torch.where(x < 3 * torch.rand((), generator=rng, dtype=DOUBLE), p_model, torch.zeros_like(x))
        pairs.append({"p_data": p_data / (p_data.sum() * dx), "p_model": p_model / (p_model.sum() * dx)})
    return pairs, dx


def _entropy(p, dx):
    return -(torch.special.xlogy(p, p) * dx).sum()


def _two_jsd(p, q, dx):
    """2 JSD(p || q) as 2 H((p + q) / 2) - H(p) - H(q): no KL involved."""
    return 2 * _entropy((p + q) / 2, dx) - _entropy(p, dx) - _entropy(q, dx)


def _fresh_pairs(rng, with_equal_pair=False, zeros=False) -> dict:
    """Fresh pairs of densities on a grid (their expected values are computed in the checks, never sent with them)."""
    pairs, dx = _grid_pairs(rng, 3, zeros=zeros)
    if with_equal_pair:
        pairs.append({"p_data": pairs[0]["p_data"], "p_model": pairs[0]["p_data"]})
    return {"pairs": pairs, "dx": dx}


# The reference answers of C3b-C3d and the given `kl_on_grid`, as plain code: the stand-ins for the student's own.
# A probe that sends them runs after the others, beside only the probes that send the same ones (bank.runs_alone).
def reference_value_on_grid(d, p_data, p_model, dx):
    return ((p_data * torch.log(d) + p_model * torch.log1p(-d)) * dx).sum()


def reference_optimal_discriminator(p_data, p_model):
    return p_data / (p_data + p_model)


def reference_kl_on_grid(p, q, dx):
    mask = p > 0
    return ((p[mask] * (p[mask].log() - q[mask].log())) * dx).sum()


def reference_value_at_optimal_discriminator(p_data, p_model, dx):
    m = (p_data + p_model) / 2
    return -math.log(4) + reference_kl_on_grid(p_data, m, dx) + reference_kl_on_grid(p_model, m, dx)


def _on_each_pair(answers, name: str, stand_ins: dict, inputs) -> dict:
    """`answers.name` on each pair of densities, with `stand_ins` in place of the functions it may call."""
    values = [call_with_stand_ins(answers, name, stand_ins, pair["p_data"], pair["p_model"], inputs["dx"])
              for pair in inputs["pairs"]]
    return {"values": [float(v) for v in values]}


@hidden_test("C3d", points=1, shared=(call_with_stand_ins, _on_each_pair, reference_value_on_grid,
                                       reference_optimal_discriminator, reference_kl_on_grid))
class ValueAtOptimalDiscriminator:
    """`value_at_optimal_discriminator` on fresh pairs of densities (and p_G = p_data), against the grader's own
    route"""

    @staticmethod
    def inputs(rng):
        return _fresh_pairs(rng, with_equal_pair=True)

    @staticmethod
    def probe(answers, inputs):
        stand_ins = {"value_on_grid": reference_value_on_grid, "kl_on_grid": reference_kl_on_grid,
                     "optimal_discriminator": reference_optimal_discriminator}
        return _on_each_pair(answers, "value_at_optimal_discriminator", stand_ins, inputs)

    @staticmethod
    def check(inputs, outputs, ref):
        expected = [(-math.log(4) + _two_jsd(pair["p_data"], pair["p_model"], inputs["dx"])).item()
                    for pair in inputs["pairs"]]
        return compare(outputs["values"], expected, "C(G) for four pairs of densities", rtol=1e-6)


@hidden_test("A17", points=2, shared=(call_with_stand_ins, _on_each_pair, reference_value_on_grid,
                                       reference_optimal_discriminator, reference_kl_on_grid,
                                       reference_value_at_optimal_discriminator))
class NonSaturatingCriterion:
    """`non_saturating_criterion` on fresh pairs of densities (one with p_G = 0 on part of the grid), against the
    grader's own route"""

    @staticmethod
    def inputs(rng):
        return _fresh_pairs(rng, zeros=True)

    @staticmethod
    def probe(answers, inputs):
        stand_ins = {"value_on_grid": reference_value_on_grid, "kl_on_grid": reference_kl_on_grid,
                     "optimal_discriminator": reference_optimal_discriminator,
                     "value_at_optimal_discriminator": reference_value_at_optimal_discriminator}
        return _on_each_pair(answers, "non_saturating_criterion", stand_ins, inputs)

    @staticmethod
    def check(inputs, outputs, ref):
        dx, expected = inputs["dx"], []
        for pair in inputs["pairs"]:
            p, q = pair["p_data"], pair["p_model"]
            reverse_kl = -_entropy(q, dx) - (torch.special.xlogy(q, p) * dx).sum()
            expected.append((reverse_kl - _two_jsd(p, q, dx)).item())
        return compare(outputs["values"], expected, "the criterion for three pairs of densities", rtol=1e-6)
