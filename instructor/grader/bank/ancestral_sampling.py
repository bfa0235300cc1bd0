"""Hidden tests of notebook 01, ancestral sampling: the student's sampler, estimator, enumeration and standard error on
fresh random networks, against the joint distribution that the grader computes itself by brute force."""
import itertools

import torch

from . import hidden_test
from .compare import compare

SAMPLES = 100_000


def random_network(rng) -> dict:
    """A fresh network as plain data: two roots R and B, a deterministic X = lookup[R, B] in the middle with a
    random child Y (which also depends on B), and a leaf Z | Y; the nodes are listed in a non-topological order."""
    sizes = {"R": 2 + int(torch.randint(2, (1,), generator=rng)), "B": 2 + int(torch.randint(2, (1,), generator=rng)),
             "X": 3, "Y": 2 + int(torch.randint(2, (1,), generator=rng)), "Z": 2}
    parents = {"R": [], "B": [], "X": ["R", "B"], "Y": ["X", "B"], "Z": ["Y"]}
    tables = {}
    for name in ("R", "B", "Y", "Z"):
        shape = [sizes[p] for p in parents[name]] + [sizes[name]]
        tables[name] = torch.softmax(1.5 * torch.randn(*shape, generator=rng, dtype=torch.float64), -1)
    lookup = torch.randint(3, (sizes["R"], sizes["B"]), generator=rng)
    lookup.view(-1)[:3] = torch.randperm(3, generator=rng)            # every value of X is reachable
    order = ["Z", "X", "Y", "R", "B"]
    order = [order[i] for i in torch.randperm(4, generator=rng).tolist()] + ["B"]   # B last: never topological
    return {"order": order, "parents": parents, "tables": tables, "lookup": lookup, "sizes": sizes}


def exact_joint(net: dict) -> torch.Tensor:
    """P(R, B, X, Y, Z) by brute force over every assignment (axes in that order)."""
    sizes, tables = net["sizes"], net["tables"]
    joint = torch.zeros(*(sizes[n] for n in "RBXYZ"), dtype=torch.float64)
    for r, b, y, z in itertools.product(range(sizes["R"]), range(sizes["B"]), range(sizes["Y"]), range(sizes["Z"])):
        x = int(net["lookup"][r, b])
        joint[r, b, x, y, z] = tables["R"][r] * tables["B"][b] * tables["Y"][x, b, y] * tables["Z"][y, z]
    return joint


def random_queries(rng, sizes: dict, count: int) -> list:
    queries = []
    for _ in range(count):
        chosen = torch.randperm(5, generator=rng)[:1 + int(torch.randint(3, (1,), generator=rng))].tolist()
        names = [list("RBXYZ")[i] for i in chosen]
        queries.append({n: int(torch.randint(sizes[n], (1,), generator=rng)) for n in names})
    return queries


def probability_of(joint: torch.Tensor, query: dict) -> float:
    return joint[tuple(query.get(n, slice(None)) for n in "RBXYZ")].sum().item()


def within(counts: torch.Tensor, probabilities: torch.Tensor, n: int) -> bool:
    """Every cell's count within 6 binomial standard deviations of n p, plus 6 for the rarest cells."""
    return bool(((counts - n * probabilities).abs() <= 6 * (n * probabilities * (1 - probabilities)).sqrt() + 6).all())


def build_network(net: dict) -> dict:
    """The network as the notebook's nodes: parents and a table, or the deterministic node X's function. Sent to the
    sandbox with the probes that use it (the Node class of the notebook is given code, not an answer)."""
    import types

    network = {}
    for name in net["order"]:
        parents = tuple(net["parents"][name])
        if name == "X":
            network[name] = types.SimpleNamespace(parents=parents, table=None,
                                                  function=lambda r, b, lookup=net["lookup"]: lookup[r, b])
        else:
            network[name] = types.SimpleNamespace(parents=parents, table=net["tables"][name], function=None)
    return network


@hidden_test("A1", points=2, shared=(build_network,))
class AncestralSampleJoint:
    """`ancestral_sample` on a fresh random network (a deterministic node in the middle, nodes not listed parents
    first): the frequency of every joint assignment over 100,000 samples against its exact probability"""

    @staticmethod
    def inputs(rng):
        return {"network": random_network(rng), "n": SAMPLES, "seed": int(torch.randint(2**31, (1,), generator=rng))}

    @staticmethod
    def probe(answers, inputs):
        network = build_network(inputs["network"])
        samples = answers.ancestral_sample(network, inputs["n"], torch.Generator().manual_seed(inputs["seed"]))
        return {name: torch.as_tensor(samples[name]) for name in "RBXYZ"}

    @staticmethod
    def check(inputs, outputs, ref):
        return joint_problem(inputs["network"], outputs, inputs["n"])


def joint_problem(net: dict, samples: dict, n: int) -> str | None:
    """What is wrong with `n` samples of a network, or None when they follow its joint distribution."""
    cell = torch.zeros(n, dtype=torch.int64)
    for name in "RBXYZ":
        values = torch.as_tensor(samples[name])
        if values.shape != (n,):
            return f"the values of a node have shape {tuple(values.shape)}, not (n,) = ({n},)"
        if values.is_floating_point() and not bool((values == values.round()).all()):
            return "the values of a node are not whole numbers"
        values = values.long()
        if not bool(((values >= 0) & (values < net["sizes"][name])).all()):
            return "some values lie outside 0 .. cardinality - 1"
        cell = cell * net["sizes"][name] + values
    joint = exact_joint(net)
    counts = torch.bincount(cell, minlength=joint.numel()).double()
    if not within(counts, joint.flatten(), n):
        worst = ((counts / n - joint.flatten()).abs()).max().item()
        return (f"the samples do not follow the network's joint distribution (an assignment's frequency is off by "
                f"{worst:.3g}, far beyond sampling noise)")
    return None


@hidden_test("A1", points=1, shared=(build_network,))
class AncestralSampleGenerator:
    """`ancestral_sample` draws from the generator it is given: the same seed gives the same samples, another seed
    other samples (samples of the right distribution: a sampler that ignores the network earns nothing here)"""

    @staticmethod
    def inputs(rng):
        return {"network": random_network(rng), "seeds": torch.randint(2**31, (2,), generator=rng).tolist()}

    @staticmethod
    def probe(answers, inputs):
        network = build_network(inputs["network"])
        runs = [answers.ancestral_sample(network, 20_000, torch.Generator().manual_seed(seed))
                for seed in (inputs["seeds"][0], inputs["seeds"][0], inputs["seeds"][1])]
        return [{name: torch.as_tensor(run[name]) for name in "RBXYZ"} for run in runs]

    @staticmethod
    def check(inputs, outputs, ref):
        first, again, other = outputs
        wrong = joint_problem(inputs["network"], first, 20_000)
        if wrong:
            return wrong
        if not all(torch.equal(first[n], again[n]) for n in "RBXYZ"):
            return ("two calls with generators of the same seed gave different samples: draw every random number "
                    "from `rng`")
        if all(torch.equal(first[n], other[n]) for n in "RBXYZ"):
            return "generators of different seeds gave the same samples: draw every random number from `rng`"
        return None


@hidden_test("A1", points=1)
class EstimateProbability:
    """`estimate_probability` on fresh samples and queries, against the fraction that the grader counts"""

    @staticmethod
    def inputs(rng):
        sizes = {"R": 2, "B": 3, "X": 3, "Y": 2, "Z": 4}
        samples = {n: torch.randint(k, (400,), generator=rng) for n, k in sizes.items()}
        queries = random_queries(rng, sizes, 6) + [{"R": 0, "Z": 3, "B": 2, "X": 1, "Y": 0}]
        return {"samples": samples, "queries": queries}

    @staticmethod
    def probe(answers, inputs):
        return [float(answers.estimate_probability(inputs["samples"], query)) for query in inputs["queries"]]

    @staticmethod
    def check(inputs, outputs, ref):
        expected = []
        for query in inputs["queries"]:
            match = torch.ones(400, dtype=torch.bool)
            for name, value in query.items():
                match &= inputs["samples"][name] == value
            expected.append(match.double().mean().item())
        return compare(outputs, expected, "the estimate of P(query)", rtol=1e-9, atol=1e-12)


@hidden_test("A1", points=2, shared=(build_network,))
class ExactProbability:
    """`exact_probability` on a fresh random network (a deterministic node in the middle) for fresh queries, against
    the grader's brute-force joint"""

    @staticmethod
    def inputs(rng):
        net = random_network(rng)
        return {"network": net, "queries": random_queries(rng, net["sizes"], 8) + [{}]}

    @staticmethod
    def probe(answers, inputs):
        network = build_network(inputs["network"])
        return [float(answers.exact_probability(network, query)) for query in inputs["queries"]]

    @staticmethod
    def check(inputs, outputs, ref):
        joint = exact_joint(inputs["network"])
        expected = [probability_of(joint, query) for query in inputs["queries"]]
        return compare(outputs, expected, "P(query)", rtol=1e-9, atol=1e-12)


@hidden_test("A1", points=1)
class StandardError:
    """`standard_error` on fresh probabilities and sample sizes, against the binomial standard deviation of a
    frequency"""

    @staticmethod
    def inputs(rng):
        p = torch.rand(40, generator=rng, dtype=torch.float64) * 0.98 + 0.01
        n = torch.randint(1, 10**6, (40,), generator=rng)
        return {"p": p, "n": n}

    @staticmethod
    def probe(answers, inputs):
        return {"tensor": answers.standard_error(inputs["p"], inputs["n"]),
                "number": float(answers.standard_error(float(inputs["p"][0]), int(inputs["n"][0])))}

    @staticmethod
    def check(inputs, outputs, ref):
        p, n = inputs["p"], inputs["n"].double()
        expected = (p * (1 - p) / n).sqrt()
        return (compare(outputs["tensor"], expected, "the standard error", rtol=1e-9)
                or compare(outputs["number"], expected[0], "the standard error of one number", rtol=1e-9))
