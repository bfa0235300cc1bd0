"""Hidden tests of notebook 06, the GAN on MNIST: the two losses against their definitions at fresh logits, one training
step against an autograd replay, and a generator that the grader trains with the student's step, measured with the
grader's classifier."""
import torch
import torch.nn.functional as F

from . import hidden_test, model_test
from .compare import DETAIL, compare, finite_number


def _log_d(logits):
    """log D = log sigmoid(s) in double precision, from the logits (never from a rounded probability)."""
    return F.logsigmoid(torch.as_tensor(logits, dtype=torch.float64))


@hidden_test("C4", points=2)
class DiscriminatorLoss:
    """`discriminator_loss` against minus D's objective at fresh logits of real and generated batches of other sizes"""

    @staticmethod
    def inputs(rng):
        return {"logits_real": 3 * torch.randn(37, generator=rng, dtype=torch.float64),
                "logits_fake": 3 * torch.randn(23, generator=rng, dtype=torch.float64)}

    @staticmethod
    def probe(answers, inputs):
        return {"loss": answers.discriminator_loss(inputs["logits_real"], inputs["logits_fake"])}

    @staticmethod
    def check(inputs, outputs, ref):
        real, fake = inputs["logits_real"], inputs["logits_fake"]
        expected = -(_log_d(real).mean() + _log_d(-fake).mean())       # log(1 - sigmoid(s)) = log sigmoid(-s)
        wrong = compare(outputs["loss"], expected, "the discriminator's loss", rtol=1e-6)
        if wrong:
            swapped = -(_log_d(-real).mean() + _log_d(fake).mean())
            if compare(outputs["loss"], swapped, "", rtol=1e-6) is None:
                return wrong.replace(DETAIL, " (it treats the generated images as the real ones)" + DETAIL)
            if compare(outputs["loss"], expected / 2, "", rtol=1e-6) is None:
                hint = " (it is half the loss: the two averages are added, not averaged)"
                return wrong.replace(DETAIL, hint + DETAIL)
        return wrong


@hidden_test("C4", points=2)
class GeneratorLoss:
    """`generator_loss` and its gradient at fresh logits against the non-saturating loss's definition"""

    @staticmethod
    def inputs(rng):
        return {"logits_fake": 3 * torch.randn(29, generator=rng, dtype=torch.float64)}

    @staticmethod
    def probe(answers, inputs):
        logits = inputs["logits_fake"].clone().requires_grad_(True)
        loss = answers.generator_loss(logits)
        (gradient,) = torch.autograd.grad(loss, logits)
        return {"loss": loss, "gradient": gradient}

    @staticmethod
    def check(inputs, outputs, ref):
        logits = inputs["logits_fake"].clone().requires_grad_(True)
        expected = -_log_d(logits).mean()
        (gradient,) = torch.autograd.grad(expected, logits)
        wrong = compare(outputs["loss"], expected.detach(), "the generator's loss", rtol=1e-6)
        if wrong and compare(outputs["loss"], _log_d(-logits).mean().detach(), "", rtol=1e-6) is None:
            return wrong.replace(DETAIL, " (it is the saturating loss, not the non-saturating one)" + DETAIL)
        return wrong or compare(outputs["gradient"], gradient, "the gradient of the generator's loss", rtol=1e-6)


@hidden_test("C4", points=1)
class LossesAtConfidentLogits:
    """both losses in float32 at fresh logits where D is confident (sigmoid rounds to 0 or 1): finite and accurate"""

    @staticmethod
    def inputs(rng):
        def magnitude(n, low, high):
            return low + (high - low) * torch.rand(n, generator=rng)
        return {"logits_real": -magnitude(8, 20.0, 60.0),       # D sure that real digits are fake
                "logits_fake": magnitude(8, 20.0, 60.0),        # D fooled, and sure of it
                "logits_fake_g": -magnitude(8, 90.0, 130.0)}    # D sure that generated digits are fake

    @staticmethod
    def probe(answers, inputs):
        return {"loss_d": answers.discriminator_loss(inputs["logits_real"], inputs["logits_fake"]),
                "loss_g": answers.generator_loss(inputs["logits_fake_g"])}

    @staticmethod
    def check(inputs, outputs, ref):
        expected_d = -(_log_d(inputs["logits_real"]).mean() + _log_d(-inputs["logits_fake"]).mean())
        expected_g = -_log_d(inputs["logits_fake_g"]).mean()
        for name, got, expected in (("discriminator_loss", outputs["loss_d"], expected_d),
                                    ("generator_loss", outputs["loss_g"], expected_g)):
            value = finite_number(got)
            if value is None:
                return f"{name} is not one finite number at float32 logits where D is confident (tens of units)"
            wrong = compare(value, expected, f"{name} at float32 logits where D is confident", rtol=1e-5)
            if wrong:
                return wrong
        return None


STEP_LATENT, STEP_HIDDEN_G, STEP_HIDDEN_D, STEP_BATCH = 6, 24, 16, 20     # the probe of GanStep writes them out


def step_players(g_vector=None, d_vector=None):
    """GanStep's small G (an MLP with a tanh output) and D (an MLP to one logit), in double precision."""
    g = torch.nn.Sequential(torch.nn.Linear(STEP_LATENT, STEP_HIDDEN_G), torch.nn.Tanh(),
                            torch.nn.Linear(STEP_HIDDEN_G, 784), torch.nn.Tanh()).double()
    d = torch.nn.Sequential(torch.nn.Linear(784, STEP_HIDDEN_D), torch.nn.LeakyReLU(0.2),
                            torch.nn.Linear(STEP_HIDDEN_D, 1), torch.nn.Flatten(0)).double()
    if g_vector is not None:
        torch.nn.utils.vector_to_parameters(g_vector.clone(), g.parameters())
        torch.nn.utils.vector_to_parameters(d_vector.clone(), d.parameters())
    return g, d


def _step_loss_d(real, fake):
    """The stand-in of GanStep for D's loss (least squares, asymmetric in its arguments): not the answer."""
    return (real - 1).square().mean() + 0.5 * (fake + 1).square().mean()


def _step_loss_g(fake):
    """The stand-in of GanStep for G's loss: not the answer."""
    return (fake - 1).square().mean() + 0.1 * fake.mean()


@hidden_test("C4", points=3)
class GanStep:
    """one `gan_step` of a small G and D against an autograd replay: D's update on both batches, then G's through the
    updated D, each changing only its own player and reading translated images (with the grader's stand-ins for the
    losses and `translate`, so that only the step is tested)"""

    @staticmethod
    def inputs(rng):
        g, d = step_players()
        n_g, n_d = sum(p.numel() for p in g.parameters()), sum(p.numel() for p in d.parameters())
        return {"real": 2 * torch.rand(STEP_BATCH, 784, generator=rng, dtype=torch.float64) - 1,
                "g": 0.2 * torch.randn(n_g, generator=rng, dtype=torch.float64),
                "d": 0.05 * torch.randn(n_d, generator=rng, dtype=torch.float64),
                "stale_g": torch.randn(n_g, generator=rng, dtype=torch.float64),
                "stale_d": torch.randn(n_d, generator=rng, dtype=torch.float64),
                "seed": int(torch.randint(0, 2**31 - 1, (1,), generator=rng)),
                "lr_g": 0.07, "lr_d": 0.03, "max_shift": 1}

    @staticmethod
    def probe(answers, inputs):
        import torch
        from torch import nn

        g = nn.Sequential(nn.Linear(6, 24), nn.Tanh(), nn.Linear(24, 784), nn.Tanh()).double()
        d = nn.Sequential(nn.Linear(784, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1), nn.Flatten(0)).double()
        g.latent_dim = 6
        for model, weights, stale in ((g, inputs["g"], inputs["stale_g"]), (d, inputs["d"], inputs["stale_d"])):
            nn.utils.vector_to_parameters(weights.clone(), model.parameters())
            start = 0
            for p in model.parameters():       # gradients an earlier step left behind
                p.grad = stale[start:start + p.numel()].view_as(p).clone()
                start += p.numel()
        opt_g = torch.optim.SGD(g.parameters(), lr=inputs["lr_g"])
        opt_d = torch.optim.SGD(d.parameters(), lr=inputs["lr_d"])
        # stand-ins of the grader's for the losses and the translation: deterministic, and not the answers
        originals = {name: getattr(answers, name) for name in ("discriminator_loss", "generator_loss", "translate")}
        answers.discriminator_loss = lambda real, fake: (real - 1).square().mean() + 0.5 * (fake + 1).square().mean()
        answers.generator_loss = lambda fake: (fake - 1).square().mean() + 0.1 * fake.mean()
        answers.translate = lambda images, max_shift=2: torch.roll(images, shifts=29 * max_shift, dims=-1)
        try:
            torch.manual_seed(inputs["seed"])
            stats = answers.gan_step(g, d, opt_g, opt_d, inputs["real"], max_shift=inputs["max_shift"])
        finally:
            for name, function in originals.items():
                setattr(answers, name, function)
        return {"g": nn.utils.parameters_to_vector(g.parameters()).detach(),
                "d": nn.utils.parameters_to_vector(d.parameters()).detach(), "stats": stats}

    @staticmethod
    def check(inputs, outputs, ref):
        def shift(images):
            return torch.roll(images, shifts=29 * inputs["max_shift"], dims=-1)

        g, d = step_players(inputs["g"], inputs["d"])
        z = torch.randn(len(inputs["real"]), STEP_LATENT, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(inputs["seed"]))
        fake = g(z)
        logits_real, logits_fake = d(shift(inputs["real"])), d(shift(fake.detach()))
        first = _step_loss_d(logits_real, logits_fake)
        grads = torch.autograd.grad(first, list(d.parameters()))
        with torch.no_grad():
            for p, grad in zip(d.parameters(), grads):
                p -= inputs["lr_d"] * grad
        second = _step_loss_g(d(shift(fake)))
        grads = torch.autograd.grad(second, list(g.parameters()))
        with torch.no_grad():
            for p, grad in zip(g.parameters(), grads):
                p -= inputs["lr_g"] * grad
        expected_g = torch.nn.utils.parameters_to_vector(g.parameters()).detach()
        expected_d = torch.nn.utils.parameters_to_vector(d.parameters()).detach()
        if compare(outputs["d"], inputs["d"], "", rtol=0, atol=0) is None:
            return "D's update left D unchanged"
        wrong = compare(outputs["d"], expected_d, "D's weights after the step", rtol=1e-8, atol=1e-10)
        if wrong:
            return wrong
        if compare(outputs["g"], inputs["g"], "", rtol=0, atol=0) is None:
            return "G's update left G unchanged"
        wrong = compare(outputs["g"], expected_g, "G's weights after the step", rtol=1e-8, atol=1e-10)
        if wrong:
            return wrong
        expected_stats = torch.stack([first.detach(), second.detach(), torch.sigmoid(logits_real).mean().detach(),
                                      torch.sigmoid(logits_fake).mean().detach()])
        return compare(outputs["stats"], expected_stats, "the returned [loss_D, loss_G, mean D(x), mean D(G(z))]",
                       rtol=1e-8, atol=1e-10)


GENERATOR = {"latent_dim": 64, "channels": (64, 32)}     # the notebook's settings.generator
EPOCHS = 4                                               # the notebook's quick settings.epochs: the key's recipe
# the notebook's cells that train its generator, by id: start(); the settings, the digits and the classifier; the loop
TRAINING_CELLS = ("da1bfbe9", "8ea38367", "0d220b37")


def notebook_cells_run(answers, inputs):
    """The namespace of the notebook's cells `inputs["cells"]` run as its kernel runs them in quick settings, after the
    answer cells (the names of the answers' module), on the digits the grader gives (`inputs["digits"]`), writing
    under `inputs["output"]` (a fresh folder when there is none). What the cells change in this process for
    themselves (variables, random states, the current run, matplotlib's style) is put back after."""
    import linecache
    import os
    import random
    import shutil
    import tempfile

    import matplotlib
    import numpy

    from helpers import runtime

    output = os.path.abspath(inputs.get("output") or tempfile.mkdtemp(prefix="notebook-"))
    os.makedirs(output, exist_ok=True)
    torch.save(inputs["digits"], os.path.join(output, "digits.pt"))
    variables = {"DGM_OUTPUT": output, "DGM_DATA_SOURCE": "given", "DGM_DATA_FILE": os.path.join(output, "digits.pt"),
                 "DGM_MODE": "quick"}
    before = {name: os.environ.get(name) for name in (*variables, "CUBLAS_WORKSPACE_CONFIG")}
    states = (random.getstate(), numpy.random.get_state(), torch.get_rng_state())
    started, announced = dict(runtime._current), set(runtime._announced)
    os.environ.update(variables)
    namespace = {"__name__": "__main__", **{k: v for k, v in vars(answers).items() if not k.startswith("__")}}
    names = [f"<notebook cell {number}>" for number in range(len(inputs["cells"]))]
    try:
        with matplotlib.rc_context():
            for name, source in zip(names, inputs["cells"]):
                linecache.cache[name] = (len(source), None, source.splitlines(True), name)   # inspect reads it there
                exec(compile(source, name, "exec"), namespace)
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        random.setstate(states[0])
        numpy.random.set_state(states[1])
        torch.set_rng_state(states[2])
        runtime._current.clear()
        runtime._current.update(started)
        runtime._announced.clear()
        runtime._announced.update(announced)
        for name in names:
            linecache.cache.pop(name, None)
        if not inputs.get("output"):
            shutil.rmtree(output, ignore_errors=True)
    return namespace


@model_test("C4", points=4, rule="at_most", tolerance="50%", shared=(notebook_cells_run,),
            hands_over="checkpoints/gan_generator.pt")
class GeneratorFrechetDistance:
    """the generator that the grader trains with your `gan_step` by the notebook's own training cell (its quick
    recipe): the Fréchet distance of 1,000 of its samples to the test digits, in the features of the grader's own
    classifier (lower is better)"""

    @staticmethod
    def inputs(rng):
        from . import notebook_cells
        from .digits import given_to_the_sandbox

        return {"cells": notebook_cells("06_gan_mnist", TRAINING_CELLS), "digits": given_to_the_sandbox(),
                "epochs": EPOCHS}

    @staticmethod
    def probe(answers, inputs):
        run = notebook_cells_run(answers, inputs)
        history, training = run["history"], run["training"]
        if (history["from_checkpoint"] or training["epochs"] != inputs["epochs"]
                or len(history["loss_d"]) != inputs["epochs"] or training["data"] != "given"
                or not torch.equal(run["mnist"].train_x.cpu(), inputs["digits"]["train_x"])):
            raise RuntimeError("the notebook's training cell did not train its quick recipe on the digits given")
        return {"state": run["generator"].state_dict()}

    @staticmethod
    def evaluate(outputs, ref, data):
        from helpers import ROOT, ConvGenerator, load_model
        from helpers.measures import gaussian_frechet_distance

        generator = ConvGenerator(**GENERATOR)
        generator.load_state_dict(outputs["state"])
        generator.eval()
        classifier = load_model(ROOT / "checkpoints" / "digit_classifier.pt")
        samples = generator.sample(1000, rng=torch.Generator().manual_seed(2024))
        with torch.no_grad():
            return gaussian_frechet_distance(classifier.features(samples), classifier.features(data.test_x.cpu()))
