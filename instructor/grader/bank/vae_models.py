"""Hidden tests of notebook 04, the VAE, third part: the three models the grader trains with the student's `vae_loss`
(model B, the 2-D model, the 20-D model), each in the grader's own loop on the training digits and measured by its
test ELBO on the test digits. The conventions are those of vae.py.
"""
import torch

from . import model_test

CONFIGS = {"ModelB": dict(latent_dim=2, fixed_std=0.1),
           "Model2D": dict(latent_dim=2, hidden=(512, 512, 256), decoder_dropout=0.1),
           "Model20D": dict(latent_dim=20, decoder_dropout=0.1)}
# the notebook's quick recipes: model B at a constant rate, the 2-D and 20-D models on a cosine decay
CONSTANT = {"epochs": 4, "lr": 1e-3, "final_lr": None, "batch_size": 256, "seed": 0}
DECAYED = {"epochs": 4, "lr": 2e-3, "final_lr": 1e-5, "batch_size": 256, "seed": 0}


def vae_training(name: str, recipe: dict) -> dict:
    """The inputs of a VAE's training in the sandbox: the training digits, the architecture and the recipe."""
    from .digits import grader_digits

    return {"train_x": grader_digits().train_x, "config": CONFIGS[name], **recipe}


def train_vae(answers, inputs):
    """The grader's training loop of a VAE, with the student's `vae_loss`: Adam over minibatches of freshly
    binarised training digits, every epoch run; the last weights."""
    from helpers import VAE, dynamic_binarize, minibatches

    torch.manual_seed(inputs["seed"])
    model = VAE(**inputs["config"])
    optimizer = torch.optim.Adam(model.parameters(), lr=inputs["lr"])
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, inputs["epochs"], inputs["final_lr"])
                 if inputs["final_lr"] is not None else None)
    for _ in range(inputs["epochs"]):
        model.train()
        train_x = dynamic_binarize(inputs["train_x"])
        for index in minibatches(len(train_x), inputs["batch_size"], "cpu"):
            loss = answers.vae_loss(model, train_x[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return {"state": model.state_dict()}


def test_elbo(outputs, ref, data, name: str) -> float:
    """The mean ELBO of the test digits (their fixed binarisation), 10 draws each, seeded, by the reference `elbo`,
    of the trained weights loaded into the grader's own architecture."""
    from helpers import VAE, evaluation_sets

    model = VAE(**CONFIGS[name])
    model.load_state_dict(outputs["state"])
    model.eval()
    test_x = evaluation_sets(data)[1].cpu()
    torch.manual_seed(0)
    with torch.no_grad():
        return ref.vae.elbo(model, test_x, samples=10).mean().item()


@model_test("B4", points=2, rule="at_least", tolerance="5%")
class ModelB:
    """model B (q = N(g(x), 0.01 I), 2-D), trained by the grader with your `vae_loss`: its test ELBO"""
    inputs = staticmethod(lambda rng: vae_training("ModelB", CONSTANT))
    probe = staticmethod(train_vae)
    evaluate = staticmethod(lambda outputs, ref, data: test_elbo(outputs, ref, data, "ModelB"))


@model_test("C2a-C2e", points=2, rule="at_least", tolerance="5%")
class Model2D:
    """the 2-D model with a learned variance, trained by the grader with your `vae_loss`: its test ELBO"""
    inputs = staticmethod(lambda rng: vae_training("Model2D", DECAYED))
    probe = staticmethod(train_vae)
    evaluate = staticmethod(lambda outputs, ref, data: test_elbo(outputs, ref, data, "Model2D"))


@model_test("A9", points=2, rule="at_least", tolerance="5%")
class Model20D:
    """the 20-D model, trained by the grader with your `vae_loss`: its test ELBO"""
    inputs = staticmethod(lambda rng: vae_training("Model20D", DECAYED))
    probe = staticmethod(train_vae)
    evaluate = staticmethod(lambda outputs, ref, data: test_elbo(outputs, ref, data, "Model20D"))
