"""Hidden tests of notebook 03, the KL divergence: closed forms against torch.distributions on fresh inputs."""
import math

import torch
from scipy.optimize import linear_sum_assignment
from scipy.stats import wasserstein_distance
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence

from . import hidden_test
from .compare import DETAIL, compare, random_covariances


def without_library_kl(call):
    """call() with torch.distributions' closed-form KLs unavailable: an answer must compute the divergence itself.
    Sent to the sandbox with the probes that use it."""
    from torch.distributions import kl

    saved = dict(kl._KL_REGISTRY)
    kl._KL_REGISTRY.clear()
    kl._KL_MEMOIZE.clear()
    try:
        return call()
    finally:
        kl._KL_REGISTRY.update(saved)
        kl._KL_MEMOIZE.clear()


@hidden_test("A3", points=3, shared=(without_library_kl,))
class GaussianKL:
    """`gaussian_kl` against torch.distributions on 200 fresh pairs of Gaussians"""

    @staticmethod
    def inputs(rng):
        m = 3 * torch.randn(2, 200, generator=rng, dtype=torch.float64)
        s = 0.05 + 3 * torch.rand(2, 200, generator=rng, dtype=torch.float64)
        m[:, :10], s[1, :10] = m[0, :10], s[0, :10]          # ten equal pairs: KL(p || p) = 0
        return {"m1": m[0], "s1": s[0], "m2": m[1], "s2": s[1]}

    @staticmethod
    def probe(answers, inputs):
        return {"kl": without_library_kl(lambda: answers.gaussian_kl(inputs["m1"], inputs["s1"], inputs["m2"],
                                                                     inputs["s2"]))}

    @staticmethod
    def check(inputs, outputs, ref):
        p, q = Normal(inputs["m1"], inputs["s1"]), Normal(inputs["m2"], inputs["s2"])
        wrong = compare(outputs["kl"], kl_divergence(p, q), "KL(p || q)", rtol=1e-6)
        if wrong and compare(outputs["kl"], kl_divergence(q, p), "", rtol=1e-6) is None:
            hint = " (it gives KL(q || p): the expectation is under the first distribution)"
            return wrong.replace(DETAIL, hint + DETAIL)
        return wrong


@hidden_test("A3", points=1)
class SmallAndLargePairs:
    """`pairs`: the grader computes each pair's KL itself (below 0.01 and above 10 nats)"""

    @staticmethod
    def inputs(rng):
        return {}

    @staticmethod
    def probe(answers, inputs):
        return {name: [float(v) for v in pair] for name, pair in answers.pairs.items()}

    @staticmethod
    def check(inputs, outputs, ref):
        problems = []
        for name, test, words in (("small", lambda kl: kl < 0.01, "below 0.01"),
                                  ("large", lambda kl: kl > 10, "above 10")):
            pair = outputs.get(name)
            if not isinstance(pair, list) or len(pair) != 4 or not all(math.isfinite(v) for v in pair) or \
                    pair[1] <= 0 or pair[3] <= 0:
                problems.append(f"`pairs['{name}']` is not four finite numbers (m1, s1, m2, s2) with s1, s2 > 0")
                continue
            kl = kl_divergence(Normal(pair[0], pair[1]), Normal(pair[2], pair[3])).item()
            if not test(kl):
                problems.append(f"the {name} pair's KL is {kl:.4g}, not {words} nats")
        return "; ".join(problems) or None


@hidden_test("C1h", points=1, shared=(without_library_kl,))
class KLEqualVariance:
    """`kl_equal_variance` against torch.distributions on 200 fresh pairs"""

    @staticmethod
    def inputs(rng):
        return {"m1": 3 * torch.randn(200, generator=rng, dtype=torch.float64),
                "m2": 3 * torch.randn(200, generator=rng, dtype=torch.float64),
                "s": 0.05 + 3 * torch.rand(200, generator=rng, dtype=torch.float64)}

    @staticmethod
    def probe(answers, inputs):
        return {"kl": without_library_kl(lambda: answers.kl_equal_variance(inputs["m1"], inputs["m2"], inputs["s"]))}

    @staticmethod
    def check(inputs, outputs, ref):
        expected = kl_divergence(Normal(inputs["m1"], inputs["s"]), Normal(inputs["m2"], inputs["s"]))
        return compare(outputs["kl"], expected, "KL", rtol=1e-6)


@hidden_test("N", points=2, shared=(without_library_kl,))
class GaussianKLFull:
    """`gaussian_kl_full` against torch.distributions on fresh batches of Gaussians in 1, 3 and 7 dimensions"""

    @staticmethod
    def inputs(rng):
        cases = {}
        for d in (1, 3, 7):
            cases[str(d)] = {"m1": torch.randn(5, d, generator=rng, dtype=torch.float64),
                             "m2": torch.randn(5, d, generator=rng, dtype=torch.float64),
                             "cov1": random_covariances(rng, 5, d), "cov2": random_covariances(rng, 5, d)}
        return cases

    @staticmethod
    def probe(answers, inputs):
        return without_library_kl(lambda: {d: answers.gaussian_kl_full(c["m1"], c["cov1"], c["m2"], c["cov2"])
                                           for d, c in inputs.items()})

    @staticmethod
    def check(inputs, outputs, ref):
        for d, c in inputs.items():
            expected = kl_divergence(MultivariateNormal(c["m1"], c["cov1"]), MultivariateNormal(c["m2"], c["cov2"]))
            wrong = compare(outputs.get(d), expected, f"KL in {d} dimension(s)", rtol=1e-6)
            if wrong:
                return wrong
        return None


@hidden_test("N", points=2, shared=(without_library_kl,))
class KLToStandardNormal:
    """`kl_to_standard_normal` against torch.distributions on 50 fresh encoder outputs in 8 dimensions"""

    @staticmethod
    def inputs(rng):
        return {"mu": 2 * torch.randn(50, 8, generator=rng, dtype=torch.float64),
                "logvar": 2 * torch.randn(50, 8, generator=rng, dtype=torch.float64)}

    @staticmethod
    def probe(answers, inputs):
        return {"kl": without_library_kl(lambda: answers.kl_to_standard_normal(inputs["mu"], inputs["logvar"]))}

    @staticmethod
    def check(inputs, outputs, ref):
        q = Independent(Normal(inputs["mu"], (0.5 * inputs["logvar"]).exp()), 1)
        p = Independent(Normal(torch.zeros_like(inputs["mu"]), 1.0), 1)
        return compare(outputs["kl"], kl_divergence(q, p), "KL per row", rtol=1e-6)


@hidden_test("C3e", points=1)
class SegmentDivergences:
    """`kl_segments` and `js_segments` on equal and on disjoint segments at fresh positions"""

    @staticmethod
    def inputs(rng):
        thetas = (torch.rand(4, generator=rng, dtype=torch.float64) * 4 - 2).tolist()
        return {"pairs": [[thetas[0], thetas[0]], [thetas[1], thetas[2]], [thetas[3], thetas[3] + 1e-3]]}

    @staticmethod
    def probe(answers, inputs):
        return {"kl": [float(answers.kl_segments(a, b)) for a, b in inputs["pairs"]],
                "js": [float(answers.js_segments(a, b)) for a, b in inputs["pairs"]]}

    @staticmethod
    def check(inputs, outputs, ref):
        expected_kl, expected_js = [0.0, math.inf, math.inf], [0.0, math.log(2), math.log(2)]
        for name, got, expected in (("kl_segments", outputs["kl"], expected_kl),
                                    ("js_segments", outputs["js"], expected_js)):
            if not isinstance(got, list) or len(got) != len(inputs["pairs"]):
                return f"{name} was not called once for each of the {len(inputs['pairs'])} pairs of segments"
            for (a, b), g, e in zip(inputs["pairs"], got, expected, strict=True):
                if not (g == e or (math.isfinite(e) and abs(g - e) < 1e-9)):
                    return f"{name}({a:.4g}, {b:.4g}) is {g:.6g}, which is wrong"
        return None


@hidden_test("C3e", points=2)
class Wasserstein1:
    """`wasserstein1_empirical` against an optimal assignment on fresh point sets, and against the 1-D formula"""

    @staticmethod
    def inputs(rng):
        return {"a": torch.randn(30, 2, generator=rng, dtype=torch.float64),
                "b": torch.randn(30, 2, generator=rng, dtype=torch.float64) + 1.5,
                "line_a": torch.randn(40, generator=rng, dtype=torch.float64),
                "line_b": 2 * torch.randn(40, generator=rng, dtype=torch.float64)}

    @staticmethod
    def probe(answers, inputs):
        flat = [torch.stack([inputs[k], torch.zeros_like(inputs[k])], 1) for k in ("line_a", "line_b")]
        return {"plane": float(answers.wasserstein1_empirical(inputs["a"], inputs["b"])),
                "line": float(answers.wasserstein1_empirical(*flat))}

    @staticmethod
    def check(inputs, outputs, ref):
        cost = torch.cdist(inputs["a"], inputs["b"]).numpy()
        rows, cols = linear_sum_assignment(cost)
        plane = float(cost[rows, cols].mean())
        line = wasserstein_distance(inputs["line_a"].numpy(), inputs["line_b"].numpy())
        return (compare(outputs["plane"], plane, "W1 between two point sets in the plane", rtol=1e-6)
                or compare(outputs["line"], line, "W1 between two point sets on a line", rtol=1e-6))
