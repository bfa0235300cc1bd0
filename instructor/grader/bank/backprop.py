"""Hidden tests of notebook 07, backpropagation by hand: each layer's backward, the whole sweep and the SGD step
against autograd on fresh parameters and data (the probes build the student's objects and call their methods), the
per-layer gradient norms of A19, and a classifier that the grader trains with the student's backward (A20).
"""
import torch
import torch.nn.functional as F

from . import hidden_test, model_test
from .compare import compare

DOUBLE = torch.float64


def _parameters(rng, sizes):
    return [(torch.randn(n_out, n_in, generator=rng, dtype=DOUBLE) / n_in**0.5,
             0.3 * torch.randn(n_out, generator=rng, dtype=DOUBLE)) for n_in, n_out in zip(sizes[:-1], sizes[1:])]


@hidden_test("A18", points=2)
class LinearBackward:
    """`Linear.backward` on a fresh layer, batch and incoming gradient: dL/dH, grad_weight and grad_bias against
    autograd"""

    @staticmethod
    def inputs(rng):
        n, n_in, n_out = 6 + int(torch.randint(0, 5, (), generator=rng)), 5, 3
        (weight, bias), = _parameters(rng, [n_in, n_out])
        return {"weight": weight, "bias": bias, "h": torch.randn(n, n_in, generator=rng, dtype=DOUBLE),
                "delta": torch.randn(n, n_out, generator=rng, dtype=DOUBLE)}

    @staticmethod
    def probe(answers, inputs):
        layer = answers.Linear(inputs["weight"].clone(), inputs["bias"].clone())
        layer.forward(inputs["h"].clone())
        grad_h = layer.backward(inputs["delta"].clone())
        return {"grad_h": grad_h, "grad_weight": layer.grad_weight, "grad_bias": layer.grad_bias}

    @staticmethod
    def check(inputs, outputs, ref):
        leaves = [inputs[k].clone().requires_grad_(True) for k in ("h", "weight", "bias")]
        grad_h, grad_weight, grad_bias = torch.autograd.grad((F.linear(*leaves) * inputs["delta"]).sum(), leaves)
        return (compare(outputs["grad_weight"], grad_weight, "grad_weight", rtol=1e-9)
                or compare(outputs["grad_bias"], grad_bias, "grad_bias", rtol=1e-9)
                or compare(outputs["grad_h"], grad_h, "the gradient returned (dL/dH)", rtol=1e-9))


@hidden_test("A18", points=1)
class ActivationBackward:
    """`Sigmoid`, `Tanh` and `ReLU`: backward after a forward pass on fresh inputs, against autograd"""

    @staticmethod
    def inputs(rng):
        return {"a": 2.5 * torch.randn(7, 5, generator=rng, dtype=DOUBLE),
                "grad": torch.randn(7, 5, generator=rng, dtype=DOUBLE)}

    @staticmethod
    def probe(answers, inputs):
        out = {}
        for name in ("Sigmoid", "Tanh", "ReLU"):
            unit = getattr(answers, name)()
            unit.forward(inputs["a"].clone())
            out[name] = unit.backward(inputs["grad"].clone())
        return out

    @staticmethod
    def check(inputs, outputs, ref):
        for name, function in (("Sigmoid", torch.sigmoid), ("Tanh", torch.tanh), ("ReLU", torch.relu)):
            leaf = inputs["a"].clone().requires_grad_(True)
            (expected,) = torch.autograd.grad((function(leaf) * inputs["grad"]).sum(), leaf)
            wrong = compare(outputs.get(name), expected, f"{name}.backward", rtol=1e-9)
            if wrong:
                return wrong
        return None


@hidden_test("A18", points=1)
class SoftmaxCrossEntropyBackward:
    """`SoftmaxCrossEntropy.backward` after a forward pass on fresh scores and labels, against autograd"""

    @staticmethod
    def inputs(rng):
        n = 5 + int(torch.randint(0, 6, (), generator=rng))
        return {"scores": 3 * torch.randn(n, 4, generator=rng, dtype=DOUBLE),
                "labels": torch.randint(0, 4, (n,), generator=rng)}

    @staticmethod
    def probe(answers, inputs):
        criterion = answers.SoftmaxCrossEntropy()
        criterion.forward(inputs["scores"].clone(), inputs["labels"].clone())
        return {"delta": criterion.backward()}

    @staticmethod
    def check(inputs, outputs, ref):
        leaf = inputs["scores"].clone().requires_grad_(True)
        (expected,) = torch.autograd.grad(F.cross_entropy(leaf, inputs["labels"]), leaf)
        return compare(outputs["delta"], expected, "dL/d(scores) of the mean cross-entropy", rtol=1e-9)


@hidden_test("A18", points=2)
class HandMLPBackward:
    """`HandMLP.backward`: every gradient of fresh three-layer networks (tanh and ReLU units) on a fresh batch,
    against autograd"""

    @staticmethod
    def inputs(rng):
        return {"parameters": [t for pair in _parameters(rng, [6, 5, 4, 3]) for t in pair],
                "x": torch.randn(9, 6, generator=rng, dtype=DOUBLE), "labels": torch.randint(0, 3, (9,), generator=rng)}

    @staticmethod
    def probe(answers, inputs):
        out = {}
        for name in ("Tanh", "ReLU"):
            flat = [t.clone() for t in inputs["parameters"]]
            network = answers.HandMLP(list(zip(flat[::2], flat[1::2])), getattr(answers, name))
            network.loss(inputs["x"].clone(), inputs["labels"].clone())
            network.backward()
            out[name] = [g for linear in network.linears for g in (linear.grad_weight, linear.grad_bias)]
        return out

    @staticmethod
    def check(inputs, outputs, ref):
        for name, activation in (("Tanh", torch.tanh), ("ReLU", torch.relu)):
            leaves = [t.clone().requires_grad_(True) for t in inputs["parameters"]]
            h = inputs["x"]
            for k in range(0, len(leaves), 2):
                h = F.linear(h, leaves[k], leaves[k + 1])
                if k < len(leaves) - 2:
                    h = activation(h)
            expected = torch.autograd.grad(F.cross_entropy(h, inputs["labels"]), leaves)
            got = outputs.get(name)
            if not isinstance(got, list) or len(got) != len(expected):
                return f"with {name} units: the network does not have one gradient per weight and bias"
            for k, (g, e) in enumerate(zip(got, expected)):
                what = f"dL/d{'W' if k % 2 == 0 else 'b'} of layer {k // 2 + 1} ({name} units)"
                wrong = compare(g, e, what, rtol=1e-9)
                if wrong:
                    return wrong
        return None


def _plant_backprop(module):
    """A18's classes, each returning or storing wrong gradients (classes are not functions: test_bank's generic
    perturbation leaves them as they are)."""
    def perturbing(cls, method):
        original = getattr(cls, method)

        def wrong(self, *args):
            result = original(self, *args)
            for name in ("grad_weight", "grad_bias"):
                if hasattr(self, name):
                    setattr(self, name, getattr(self, name) * 1.1 + 0.25)
            return None if result is None else result * 1.1 + 0.25
        return type(cls.__name__, (cls,), {method: wrong})

    for name in ("Linear", "Sigmoid", "Tanh", "ReLU", "SoftmaxCrossEntropy"):
        setattr(module, name, perturbing(getattr(module, name), "backward"))

    class HandMLP(module.HandMLP):
        def backward(self):
            super().backward()
            for linear in self.linears:
                linear.grad_weight = linear.grad_weight * 1.1 + 0.25
    module.HandMLP = HandMLP


def _plant_sgd_step(module):
    """An SGD step with the wrong rate (sgd_step returns nothing: its effect is what a test sees)."""
    original = module.sgd_step
    module.sgd_step = lambda network, lr: original(network, 1.1 * lr + 0.25)


PLANTED = {"A18": _plant_backprop, "A20": _plant_sgd_step}


@hidden_test("A19", points=2)
class WeightGradientNorms:
    """`weight_gradient_norms` on a fresh sigmoid network (with gradients left over from an earlier pass), against
    autograd, twice in a row"""

    @staticmethod
    def inputs(rng):
        return {"parameters": [t for pair in _parameters(rng, [7, 6, 5, 4]) for t in pair],
                "x": torch.randn(11, 7, generator=rng, dtype=DOUBLE),
                "labels": torch.randint(0, 4, (11,), generator=rng)}

    @staticmethod
    def probe(answers, inputs):
        from torch import nn

        p = inputs["parameters"]
        linears = [nn.Linear(w.shape[1], w.shape[0], dtype=torch.float64) for w in p[::2]]
        with torch.no_grad():
            for linear, w, b in zip(linears, p[::2], p[1::2]):
                linear.weight.copy_(w)
                linear.bias.copy_(b)
        network = nn.Sequential(linears[0], nn.Sigmoid(), linears[1], nn.Sigmoid(), linears[2])
        network(inputs["x"]).square().sum().backward()          # gradients of another loss, left in .grad
        first = answers.weight_gradient_norms(network, inputs["x"], inputs["labels"])
        second = answers.weight_gradient_norms(network, inputs["x"], inputs["labels"])
        return {"first": first, "second": second}

    @staticmethod
    def check(inputs, outputs, ref):
        p = inputs["parameters"]
        leaves = [w.clone().requires_grad_(True) for w in p[::2]]
        h = torch.sigmoid(F.linear(inputs["x"], leaves[0], p[1]))
        h = torch.sigmoid(F.linear(h, leaves[1], p[3]))
        grads = torch.autograd.grad(F.cross_entropy(F.linear(h, leaves[2], p[5]), inputs["labels"]), leaves)
        expected = torch.stack([g.norm() for g in grads])
        return (compare(outputs["first"], expected, "the norms of dL/dW, layer by layer", rtol=1e-6)
                or compare(outputs["second"], expected, "the norms of dL/dW when called a second time", rtol=1e-6))


@hidden_test("A20", points=1)
class SgdStep:
    """`sgd_step` on fresh layers holding weights, biases and their gradients, against the SGD update"""

    @staticmethod
    def inputs(rng):
        layers = []
        for n_in, n_out in ((4, 3), (3, 2)):
            layers.append({k: torch.randn(*shape, generator=rng, dtype=DOUBLE) for k, shape in
                           (("weight", (n_out, n_in)), ("bias", (n_out,)), ("grad_weight", (n_out, n_in)),
                            ("grad_bias", (n_out,)))})
        return {"layers": layers, "lr": 0.05 + 0.5 * torch.rand((), generator=rng, dtype=DOUBLE).item()}

    @staticmethod
    def probe(answers, inputs):
        from types import SimpleNamespace

        linears = [SimpleNamespace(**{k: v.clone() for k, v in layer.items()}) for layer in inputs["layers"]]
        def gradients():
            return [g for layer in linears for g in (layer.grad_weight, layer.grad_bias)]

        network = SimpleNamespace(linears=list(linears), gradients=gradients)
        answers.sgd_step(network, inputs["lr"])
        return {"after": [[linear.weight, linear.bias] for linear in linears],
                "kept": isinstance(network.linears, list) and len(network.linears) == len(linears)
                and all(a is b for a, b in zip(network.linears, linears))}

    @staticmethod
    def check(inputs, outputs, ref):
        if outputs["kept"] is not True or len(outputs["after"]) != len(inputs["layers"]):
            return "after sgd_step the network does not hold the layers it had: update them in place, keep them all"
        for k, (layer, got) in enumerate(zip(inputs["layers"], outputs["after"], strict=True)):
            expected = [layer["weight"] - inputs["lr"] * layer["grad_weight"],
                        layer["bias"] - inputs["lr"] * layer["grad_bias"]]
            wrong = (compare(got[0], expected[0], f"the weight of layer {k + 1} after the step", rtol=1e-9)
                     or compare(got[1], expected[1], f"the bias of layer {k + 1} after the step", rtol=1e-9))
            if wrong:
                return wrong
        return None


HAND_MLP_SIZES = [784, 128, 64, 10]


@model_test("A20", points=2, rule="at_least", tolerance="0.03")
class HandTrainedClassifier:
    """the classifier that the grader trains with your `HandMLP.backward`, layers and `sgd_step` (the notebook's
    quick recipe): its test accuracy, by the grader's own forward pass on the test digits"""

    @staticmethod
    def inputs(rng):
        from .digits import grader_digits

        generator = torch.Generator().manual_seed(1)
        parameters = []
        for n_in, n_out in zip(HAND_MLP_SIZES[:-1], HAND_MLP_SIZES[1:]):     # uniform in +-1/sqrt(in), as nn.Linear
            bound = n_in**-0.5
            parameters.append([(torch.rand(n_out, n_in, generator=generator, dtype=DOUBLE) * 2 - 1) * bound,
                               (torch.rand(n_out, generator=generator, dtype=DOUBLE) * 2 - 1) * bound])
        digits = grader_digits()
        return {"train_x": digits.train_x.to(DOUBLE), "train_y": digits.train_y, "parameters": parameters,
                "epochs": 3, "batch_size": 64, "lr": 0.1, "seed": 1}

    @staticmethod
    def probe(answers, inputs):
        hand = answers.HandMLP([(w.clone(), b.clone()) for w, b in inputs["parameters"]], answers.ReLU)
        order = torch.Generator().manual_seed(inputs["seed"])
        for _ in range(inputs["epochs"]):
            for index in torch.randperm(len(inputs["train_x"]), generator=order).split(inputs["batch_size"]):
                hand.loss(inputs["train_x"][index], inputs["train_y"][index])
                hand.backward()
                answers.sgd_step(hand, inputs["lr"])
        return {"state": [[linear.weight, linear.bias] for linear in hand.linears]}

    @staticmethod
    def evaluate(outputs, ref, data):
        layers = outputs["state"]
        if len(layers) != len(HAND_MLP_SIZES) - 1:
            raise ValueError(f"the network has {len(layers)} layers, not {len(HAND_MLP_SIZES) - 1}")
        h = data.test_x.cpu().to(DOUBLE)
        for k, ((weight, bias), n_in, n_out) in enumerate(zip(layers, HAND_MLP_SIZES[:-1], HAND_MLP_SIZES[1:])):
            if tuple(weight.shape) != (n_out, n_in) or tuple(bias.shape) != (n_out,):
                raise ValueError(f"layer {k + 1} has weights of shape {tuple(weight.shape)}, not {(n_out, n_in)}")
            h = h @ weight.to(DOUBLE).T + bias.to(DOUBLE)
            if k < len(layers) - 1:
                h = h.clamp_min(0)
        return (h.argmax(1) == data.test_y.cpu()).double().mean().item()
