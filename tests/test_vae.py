"""The VAE's networks (helpers.VAE): shapes, the fixed-variance encoder, saving and loading."""
import math

import pytest
import torch

from helpers import VAE, load_model, save_checkpoint


@pytest.fixture
def digits():
    grey = torch.rand(8, 784, generator=torch.Generator().manual_seed(10))
    return torch.bernoulli(grey, generator=torch.Generator().manual_seed(11))


def test_fixed_variance_encoder_outputs_only_the_mean(digits):
    model = VAE(2, fixed_std=0.1)
    mu, logvar = model.encode(digits)
    assert model.encoder[-1].out_features == 2 and mu.shape == (8, 2)
    assert torch.allclose(logvar, torch.full_like(mu, math.log(0.01)))


def test_learned_variance_encoder_outputs_mean_and_log_variance(digits):
    model = VAE(20)
    mu, logvar = model.encode(digits)
    assert model.encoder[-1].out_features == 40 and mu.shape == logvar.shape == (8, 20)
    assert model.decode(mu).shape == (8, 784) and 0 < model.decode(mu).min() and model.decode(mu).max() < 1


def test_saved_models_load_back_and_sample_alike_on_any_device(tmp_path):
    model = VAE(20, hidden=(64,), activation="relu")
    save_checkpoint(tmp_path / "vae.pt", model, {"epochs": 1})
    loaded = load_model(tmp_path / "vae.pt")
    assert loaded.config == model.config
    a = loaded.sample(4, rng=torch.Generator().manual_seed(1))
    b = model.eval().sample(4, rng=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (4, 784) and 0 <= a.min() and a.max() <= 1


def test_unknown_options_are_refused():
    with pytest.raises(ValueError, match="likelihood='poisson'"):
        VAE(2, likelihood="poisson")


def test_decoder_dropout_acts_only_while_training_and_changes_no_initial_weight(digits):
    torch.manual_seed(0)
    plain = VAE(latent_dim=2)
    torch.manual_seed(0)
    dropped = VAE(latent_dim=2, decoder_dropout=0.5)
    # dropout holds no parameters: the same seed gives the same weights, in the same order
    assert all(torch.equal(a, b) for a, b in zip(plain.parameters(), dropped.parameters()))
    assert "decoder_dropout" not in plain.config  # checkpoints saved before the option existed still match
    assert dropped.config["decoder_dropout"] == 0.5
    z = torch.randn(64, 2)
    dropped.eval()
    assert torch.equal(dropped.decode(z), plain.eval().decode(z))  # off in eval mode: the same function
    dropped.train()
    assert not torch.equal(dropped.decode(z), dropped.decode(z))  # on while training
    assert torch.equal(dropped.encode(digits)[0], plain.encode(digits)[0])  # the encoder has none
