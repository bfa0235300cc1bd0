"""Hidden tests of notebook 05, GAN theory, second part: the hand-derived gradients of the toy GAN
(D(x) = sigmoid(w . phi(x)), G(z) = a z + c) and the updates built on them, each against autograd on fresh inputs.

A14 and A16 call the gradients of A11-A13: they are run a second time with stand-ins in place of those functions, and
pass when either run is right, so a wrong gradient costs its own question only.
"""
import torch
import torch.nn.functional as F

from . import hidden_test
from .compare import compare, first_problem
from .stand_ins import call_with_stand_ins

DOUBLE = torch.float64
PHI = {"linear": lambda x: torch.stack([torch.ones_like(x), x], -1),
       "quadratic": lambda x: torch.stack([torch.ones_like(x), x, x**2], -1)}


def _toy(rng, features, n=48):
    """Fresh parameters and a minibatch of the toy GAN (w, a, c as float64; a and c as Python floats)."""
    return {"features": features,
            "w": torch.randn(len(PHI[features](torch.zeros(1))[0]), generator=rng, dtype=DOUBLE) * 0.7,
            "a": 0.5 + torch.rand((), generator=rng, dtype=DOUBLE).item(),
            "c": (2 * torch.rand((), generator=rng, dtype=DOUBLE) - 1).item(),
            "x_real": 1.5 + 0.6 * torch.randn(n, generator=rng, dtype=DOUBLE),
            "z": torch.randn(n, generator=rng, dtype=DOUBLE)}


def _autograd(w, a, c, x_real, z, features):
    """(dL/dw, dL/da, dL/dc, dL_G/da, dL_G/dc) by autograd, with log D = logsigmoid(s), log(1 - D) = logsigmoid(-s)."""
    w = w.clone().requires_grad_(True)
    a, c = (torch.tensor(float(v), dtype=DOUBLE, requires_grad=True) for v in (a, c))
    phi = PHI[features]
    fake_logits = phi(a * z + c) @ w
    objective = F.logsigmoid(phi(x_real) @ w).mean() + F.logsigmoid(-fake_logits).mean()
    grad_w, grad_a, grad_c = torch.autograd.grad(objective, (w, a, c), retain_graph=True)
    ns_a, ns_c = torch.autograd.grad(-F.logsigmoid(fake_logits).mean(), (a, c))
    return grad_w, grad_a, grad_c, ns_a, ns_c


def gradients(toy: dict, features: str) -> tuple:
    """Autograd's gradients of the toy's objective (see _autograd), for one feature map."""
    return _autograd(toy["w"], toy["a"], toy["c"], toy["x_real"], toy["z"], features)


def _toys(rng) -> dict:
    """A fresh toy GAN for each feature map."""
    return {name: _toy(rng, name) for name in PHI}


def _pair(value) -> list:
    return [float(v) for v in value]

@hidden_test("A11", points=2)
class DiscriminatorGradient:
    """`discriminator_gradient` against autograd on fresh parameters and minibatches, for both feature maps"""

    inputs = staticmethod(_toys)

    @staticmethod
    def probe(answers, inputs):
        return {name: answers.discriminator_gradient(t["w"], t["a"], t["c"], t["x_real"], t["z"], name)
                for name, t in inputs.items()}

    @staticmethod
    def check(inputs, outputs, ref):
        return first_problem(compare(outputs.get(name), gradients(t, name)[0], f"dL/dw ({name} features)",
                                     rtol=1e-6) for name, t in inputs.items())


@hidden_test("A12", points=2)
class GeneratorGradient:
    """`generator_gradient` against autograd on fresh parameters and noise, for both feature maps"""

    inputs = staticmethod(_toys)

    @staticmethod
    def probe(answers, inputs):
        return {name: [float(v) for v in answers.generator_gradient(t["w"], t["a"], t["c"], t["z"], name)]
                for name, t in inputs.items()}

    @staticmethod
    def check(inputs, outputs, ref):
        return first_problem(compare(outputs.get(name), _pair(gradients(t, name)[1:3]),
                                     f"(dL/da, dL/dc) ({name} features)", rtol=1e-6) for name, t in inputs.items())


@hidden_test("A13", points=1)
class NonSaturatingGeneratorGradient:
    """`non_saturating_generator_gradient` against autograd on fresh parameters and noise, for both feature maps"""

    inputs = staticmethod(_toys)

    @staticmethod
    def probe(answers, inputs):
        gradient = answers.non_saturating_generator_gradient
        return {name: [float(v) for v in gradient(t["w"], t["a"], t["c"], t["z"], name)] for name, t in inputs.items()}

    @staticmethod
    def check(inputs, outputs, ref):
        return first_problem(compare(outputs.get(name), _pair(gradients(t, name)[3:5]),
                                     f"(dL_G/da, dL_G/dc) ({name} features)", rtol=1e-6) for name, t in inputs.items())


# Stand-ins for the gradients of A11-A13 in the tests of A14 and A16: not the answers, but functions of every
# parameter, so that a step taken from the wrong parameters (one player after the other) gives another result.
def _discriminator_stand_in(w, a, c, x_real, z, features):
    return torch.tanh(w) * (x_real.mean() - a * z.mean()) + 0.1 * c


def _generator_stand_in(w, a, c, z, features):
    s = torch.sin(w).sum()
    return s * (a - z.mean()), s * (c + 0.5)


def _non_saturating_stand_in(w, a, c, z, features):
    s = torch.cos(w).sum()
    return s * (0.3 - a * z.std()), s * (c - 0.2)


def _with_stand_ins(answers, name: str, stand_ins: dict, *args) -> dict:
    """{"plain": answers.name(*args), "stand_ins": the same with `stand_ins` for the gradient functions}, as
    [w, a, c]."""
    outputs = {"plain": getattr(answers, name)(*args),
               "stand_ins": call_with_stand_ins(answers, name, stand_ins, *args)}
    return {k: [v[0], float(v[1]), float(v[2])] for k, v in outputs.items()}


STAND_INS = (_discriminator_stand_in, _generator_stand_in, _non_saturating_stand_in, call_with_stand_ins,
             _with_stand_ins)


@hidden_test("A14", points=2, shared=STAND_INS)
class SimultaneousUpdate:
    """`simultaneous_update` on fresh parameters: against a step with autograd's gradients, or, with stand-ins for the
    gradient functions, against the step those give (both players from the same parameters)"""

    @staticmethod
    def inputs(rng):
        toy = _toy(rng, "linear")
        toy["lr"] = 0.05 + 0.2 * torch.rand((), generator=rng, dtype=DOUBLE).item()
        return toy

    @staticmethod
    def probe(answers, inputs):
        t = inputs
        return _with_stand_ins(answers, "simultaneous_update", {"discriminator_gradient": _discriminator_stand_in,
                                          "generator_gradient": _generator_stand_in},
                               t["w"], t["a"], t["c"], t["x_real"], t["z"], t["features"], t["lr"])

    @staticmethod
    def check(inputs, outputs, ref):
        t = inputs
        grad_w, grad_a, grad_c, _, _ = _autograd(t["w"], t["a"], t["c"], t["x_real"], t["z"], t["features"])
        plain = [t["w"] + t["lr"] * grad_w, t["a"] - t["lr"] * grad_a.item(), t["c"] - t["lr"] * grad_c.item()]
        sw = _discriminator_stand_in(t["w"], t["a"], t["c"], t["x_real"], t["z"], t["features"])
        sa, sc = _generator_stand_in(t["w"], t["a"], t["c"], t["z"], t["features"])
        stand_in = [t["w"] + t["lr"] * sw, t["a"] - t["lr"] * sa.item(), t["c"] - t["lr"] * sc.item()]
        results = []
        for got, expected in ((outputs["plain"], plain), (outputs["stand_ins"], stand_in)):
            results.append(compare(got[0], expected[0], "w after the step", rtol=1e-6)
                           or compare(got[1:], expected[1:], "(a, c) after the step", rtol=1e-6))
        return None if None in results else results[0]


@hidden_test("A15", points=1)
class GeneratorLossSlopes:
    """`generator_loss_slopes` at fresh values of D(G(z)), against autograd on the two losses at the logit"""

    @staticmethod
    def inputs(rng):
        return {"d": 0.001 + 0.998 * torch.rand(200, generator=rng, dtype=DOUBLE)}

    @staticmethod
    def probe(answers, inputs):
        minimax, non_saturating = answers.generator_loss_slopes(inputs["d"])
        return {"minimax": minimax, "non_saturating": non_saturating}

    @staticmethod
    def check(inputs, outputs, ref):
        logit = torch.logit(inputs["d"]).requires_grad_(True)
        (minimax,) = torch.autograd.grad(F.logsigmoid(-logit).sum(), logit)
        (non_saturating,) = torch.autograd.grad(-F.logsigmoid(logit).sum(), logit)
        return (compare(outputs["minimax"], minimax, "the slope of log(1 - D)", rtol=1e-6)
                or compare(outputs["non_saturating"], non_saturating, "the slope of -log D", rtol=1e-6))


@hidden_test("A16", points=2, shared=STAND_INS)
class TrainingRound:
    """`training_round` on fresh parameters and batches: against a round with autograd's gradients, or, with
    stand-ins for the gradient functions, against the round those give"""

    @staticmethod
    def inputs(rng):
        toy = _toy(rng, "quadratic", n=32)
        steps = 2 + int(torch.randint(0, 3, (), generator=rng))
        toy["real_batches"] = [1.5 + 0.6 * torch.randn(32, generator=rng, dtype=DOUBLE) for _ in range(steps)]
        toy["noise_batches"] = [torch.randn(32, generator=rng, dtype=DOUBLE) for _ in range(steps)]
        toy["generator_noise"] = torch.randn(32, generator=rng, dtype=DOUBLE)
        toy["lr_discriminator"] = 0.1 + 0.1 * torch.rand((), generator=rng, dtype=DOUBLE).item()
        toy["lr_generator"] = 0.02 + 0.03 * torch.rand((), generator=rng, dtype=DOUBLE).item()
        return toy

    @staticmethod
    def probe(answers, inputs):
        t = inputs
        return _with_stand_ins(answers, "training_round", {"discriminator_gradient": _discriminator_stand_in,
                                          "generator_gradient": _generator_stand_in,
                                          "non_saturating_generator_gradient": _non_saturating_stand_in},
                               t["w"], t["a"], t["c"], t["real_batches"], t["noise_batches"], t["generator_noise"],
                               t["lr_discriminator"], t["lr_generator"], t["features"])

    @staticmethod
    def check(inputs, outputs, ref):
        t = inputs
        results = []
        for kind in ("plain", "stand_ins"):
            w, a, c = t["w"], t["a"], t["c"]
            for real, noise in zip(t["real_batches"], t["noise_batches"]):
                step = (_autograd(w, a, c, real, noise, t["features"])[0] if kind == "plain"
                        else _discriminator_stand_in(w, a, c, real, noise, t["features"]))
                w = w + t["lr_discriminator"] * step
            if kind == "plain":
                grad_a, grad_c = _autograd(w, a, c, t["real_batches"][0], t["generator_noise"], t["features"])[3:5]
            else:
                grad_a, grad_c = _non_saturating_stand_in(w, a, c, t["generator_noise"], t["features"])
            expected = [w, a - t["lr_generator"] * float(grad_a), c - t["lr_generator"] * float(grad_c)]
            got = outputs[kind]
            results.append(compare(got[0], expected[0], "w after the round", rtol=1e-6)
                           or compare(got[1:], expected[1:], "(a, c) after the round", rtol=1e-6))
        return None if None in results else results[0]
