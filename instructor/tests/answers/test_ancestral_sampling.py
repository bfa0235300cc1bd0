"""The answers of notebook 01 (answers/ancestral_sampling.py), each against an independent route.

Part of the mutation-testing suite of `make mutate`: every assertion is exact enough that a wrong sign, a dropped term
or a swapped index in an answer changes its outcome. Sampled answers are checked against exact sums with a tolerance of
a few standard errors (at fixed seeds, so each outcome is fixed), and draw by draw against the generator's own
uniforms.
"""
import math
from dataclasses import dataclass
from graphlib import TopologicalSorter

import pytest
import torch

from answers.ancestral_sampling import ancestral_sample, estimate_probability, exact_probability, standard_error

DOUBLE = torch.float64


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


def test_estimate_probability_is_the_fraction_of_samples_that_satisfy_every_queried_value():
    samples = {"A": torch.tensor([0, 1, 1, 0, 1, 1, 2, 1]), "B": torch.tensor([1, 1, 0, 1, 1, 0, 1, 1])}
    assert estimate_probability(samples, {"A": 1, "B": 1}) == pytest.approx(3 / 8, abs=1e-15)
    assert estimate_probability(samples, {"A": 1}) == pytest.approx(5 / 8, abs=1e-15)
    assert estimate_probability(samples, {"B": 0}) == pytest.approx(2 / 8, abs=1e-15)
    assert estimate_probability(samples, {"A": 2, "B": 0}) == 0
    assert estimate_probability(samples, {}) == 1


def test_estimate_probability_of_ancestral_samples_matches_the_frequency_table():
    network = student_network()
    n = 20_000
    samples = ancestral_sample(network, n, torch.Generator().manual_seed(7))
    for query in ({"L": 1, "S": 1}, {"G": 2, "D": 0}, {"F": 1}):
        count = sum(all(samples[k][i].item() == v for k, v in query.items()) for i in range(0, n, 7))
        thinned = {k: v[::7] for k, v in samples.items()}
        assert estimate_probability(thinned, query) == pytest.approx(count / len(thinned["D"]), abs=1e-15)


def test_standard_error_is_the_binomial_standard_deviation_of_a_frequency():
    """Against the spread of 20,000 simulated frequencies (Bernoulli draws) and the closed form at a few points."""
    g = torch.Generator().manual_seed(8)
    for p, n in ((0.3, 50), (0.05, 400), (0.5, 10)):
        frequencies = (torch.rand(20_000, n, generator=g, dtype=DOUBLE) < p).double().mean(1)
        assert float(standard_error(p, n)) == pytest.approx(frequencies.std().item(), rel=0.03)
        assert float(standard_error(p, n)) == pytest.approx(math.sqrt(p * (1 - p) / n), rel=1e-14)
    p, n = torch.tensor([0.0, 0.2, 1.0], dtype=DOUBLE), torch.tensor([10, 100, 1000])
    assert torch.allclose(standard_error(p, n), torch.tensor([0.0, 0.04, 0.0], dtype=DOUBLE), rtol=0, atol=1e-15)
