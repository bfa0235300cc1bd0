"""The answers of notebook 07 (answers/backprop.py), each gradient against autograd or finite differences.

Part of the mutation-testing suite of `make mutate`: every assertion is exact enough that a wrong sign, a dropped term
or a swapped index in an answer changes its outcome.
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from answers.backprop import HandMLP, Linear, ReLU, Sigmoid, SoftmaxCrossEntropy, Tanh, sgd_step, weight_gradient_norms

DOUBLE = torch.float64


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


def test_activation_backward_uses_the_last_forward_pass():
    g = torch.Generator().manual_seed(12)
    first, second, grad = (torch.randn(4, 3, generator=g, dtype=DOUBLE) for _ in range(3))
    for hand, reference in ((Sigmoid, torch.sigmoid), (Tanh, torch.tanh), (ReLU, torch.relu)):
        layer = hand()
        layer.forward(first)
        layer.forward(second)
        leaf = second.clone().requires_grad_(True)
        (expected,) = torch.autograd.grad((reference(leaf) * grad).sum(), leaf)
        assert torch.allclose(layer.backward(grad), expected, rtol=0, atol=1e-15)


def test_softmax_cross_entropy_and_its_error_match_autograd():
    g = torch.Generator().manual_seed(3)
    scores, labels = 3 * torch.randn(7, 4, generator=g, dtype=DOUBLE), torch.tensor([0, 3, 3, 1, 2, 0, 3])
    criterion = SoftmaxCrossEntropy()
    leaf = scores.clone().requires_grad_(True)
    loss = F.cross_entropy(leaf, labels)
    assert abs(criterion.forward(scores, labels) - loss) < 1e-14
    (expected,) = torch.autograd.grad(loss, leaf)
    assert torch.allclose(criterion.backward(), expected, rtol=0, atol=1e-15)
    assert torch.allclose(criterion.backward(), expected, rtol=0, atol=1e-15)     # a second call gives the same


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


def test_sgd_step_is_torch_sgd():
    parameters, x, labels, net = after_one_backward(ReLU, 8, 9)
    sgd_step(net, 0.2)
    leaves = [t.clone().requires_grad_(True) for pair in parameters for t in pair]
    optimizer = torch.optim.SGD(leaves, lr=0.2)
    twin_loss(list(zip(leaves[::2], leaves[1::2])), torch.relu, x, labels)[0].backward()
    optimizer.step()
    stepped = [t for linear in net.linears for t in (linear.weight, linear.bias)]
    assert all(torch.allclose(a, b, rtol=0, atol=1e-14) for a, b in zip(stepped, leaves))
    assert not torch.allclose(stepped[0], parameters[0][0])


def test_weight_gradient_norms_are_autograds_layer_by_layer_and_clear_old_gradients():
    torch.manual_seed(0)
    network = nn.Sequential(nn.Linear(6, 5, dtype=DOUBLE), nn.Tanh(), nn.Linear(5, 4, dtype=DOUBLE), nn.ReLU(),
                            nn.Linear(4, 3, dtype=DOUBLE))
    x, labels = mlp_problem(10)
    weights = [m.weight for m in network if isinstance(m, nn.Linear)]
    expected = torch.stack([g.norm() for g in torch.autograd.grad(F.cross_entropy(network(x), labels), weights)])
    network(x).sum().backward()                 # stale gradients of another loss
    for _ in range(2):
        got = weight_gradient_norms(network, x, labels)
        assert got.shape == (3,) and torch.allclose(got, expected, rtol=1e-12, atol=0)
