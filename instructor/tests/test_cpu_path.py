"""The pinned instruction-set path (helpers.cpu): the notebooks' training repeats bit for bit whichever path a CPU
would choose by itself.

One machine stands in for other CPUs through the variables that choose each library's path (ATen's
ATEN_CPU_CAPABILITY, MKL's MKL_CBWR, oneDNN's ONEDNN_MAX_CPU_ISA): the path of an old x86-64 CPU (SSE only), of an
AVX2 CPU and, where this one has it, of an AVX-512 CPU. Each stand-in trains the models of notebooks 04, 06 and 07 for
a few steps in a fresh process, once with DGM_CPU_PATH=native (each path as it is) and once as the notebooks run.
"""
import json
import os
import subprocess
import sys

import pytest

from helpers import cpu

TRAIN = r"""
import contextlib, hashlib, io, json
import helpers  # before torch, as in the notebooks
import torch
import torch.nn.functional as F
from torch import nn
from helpers import VAE, ConvGenerator, Discriminator, load_mnist

torch.set_num_threads(1)
with contextlib.redirect_stdout(io.StringIO()):
    mnist = load_mnist()
x, y = mnist.train_x[:256], mnist.train_y[:256]
batches = torch.randperm(256, generator=torch.Generator().manual_seed(0)).split(64)


def digest(*models):
    return hashlib.sha256(b"".join(p.detach().numpy().tobytes() for m in models for p in m.parameters())).hexdigest()


out = {"capability": torch.backends.cpu.get_cpu_capability()}

torch.manual_seed(0)  # 07 (A19): ten ReLU layers of 64 units, He initialisation, float64, plain SGD
widths = [784] + [64] * 10
net = nn.Sequential(*[m for a, b in zip(widths, widths[1:]) for m in (nn.Linear(a, b), nn.ReLU())], nn.Linear(64, 10))
net = net.double()
for m in net:
    if isinstance(m, nn.Linear):
        nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        nn.init.zeros_(m.bias)
sgd = torch.optim.SGD(net.parameters(), lr=0.1)
for index in batches:
    sgd.zero_grad()
    F.cross_entropy(net(x[index].double()), y[index]).backward()
    sgd.step()
out["07 deep ReLU network"] = digest(net)

torch.manual_seed(0)  # 04: a 20-D VAE, the negative ELBO with one reparameterised draw, Adam
vae = VAE(latent_dim=20)
adam = torch.optim.Adam(vae.parameters(), lr=1e-3)
for index in batches:
    mu, logvar = vae.encode(x[index])
    z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
    kl = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum()
    adam.zero_grad()
    (F.binary_cross_entropy(vae.decode(z), x[index], reduction="sum") + kl).backward()
    adam.step()
out["04 VAE"] = digest(vae)

torch.manual_seed(0)  # 06: the convolutional generator against the MLP discriminator, non-saturating loss, Adam
generator, discriminator = ConvGenerator(), Discriminator()
adam_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
adam_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
for index in batches:
    real, fake = 2 * x[index] - 1, generator(torch.randn(len(index), 64))
    loss_d = F.softplus(-discriminator(real)).mean() + F.softplus(discriminator(fake.detach())).mean()
    adam_d.zero_grad()
    loss_d.backward()
    adam_d.step()
    adam_g.zero_grad()
    F.softplus(-discriminator(fake)).mean().backward()
    adam_g.step()
out["06 GAN"] = digest(generator, discriminator)
print(json.dumps(out))
"""

# what a CPU of each kind chooses by itself, in each library's spelling
STAND_INS = {
    "an SSE-only CPU": {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41"},
    "an AVX2 CPU": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "an AVX-512 CPU": {"ATEN_CPU_CAPABILITY": "avx512", "MKL_CBWR": "AVX512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
}


def has_avx512() -> bool:
    from numpy._core._multiarray_umath import __cpu_features__

    return __cpu_features__.get("AVX512_SKX", False)


def train(stand_in: dict, native: bool) -> dict:
    """The digests of the three models trained in a fresh process that starts with `stand_in`'s environment."""
    env = {**os.environ, **stand_in, "DGM_DATA_SOURCE": "embedded", "OMP_NUM_THREADS": "1"}
    env.pop(cpu.PATH_VARIABLE, None)
    if native:
        env[cpu.PATH_VARIABLE] = "native"
    done = subprocess.run([sys.executable, "-c", TRAIN], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not cpu.cpu_has_avx2(), reason="the pinned path needs an x86-64 CPU with AVX2 and FMA")
def test_training_repeats_bit_for_bit_on_every_path_once_pinned():
    kinds = [kind for kind in STAND_INS if kind != "an AVX-512 CPU" or has_avx512()]
    native = {kind: train(STAND_INS[kind], native=True) for kind in kinds}
    pinned = {kind: train(STAND_INS[kind], native=False) for kind in kinds}
    models = [key for key in native[kinds[0]] if key != "capability"]

    # the stand-ins are real: each process ran the path it was given, and the training depends on it
    assert [native[kind]["capability"] for kind in kinds] == \
        [STAND_INS[kind]["ATEN_CPU_CAPABILITY"].upper() for kind in kinds]
    differing = [model for model in models if len({native[kind][model] for kind in kinds}) > 1]
    assert "07 deep ReLU network" in differing, "the stand-ins no longer change the training: the test shows nothing"

    # pinned, every stand-in runs the AVX2 path and trains the same bits
    assert {pinned[kind]["capability"] for kind in kinds} == {"AVX2"}
    for model in models:
        assert len({pinned[kind][model] for kind in kinds}) == 1, model
    assert all(pinned[kind][model] == native["an AVX2 CPU"][model] for kind in kinds for model in models)


def test_a_cpu_without_avx2_keeps_its_own_path_and_says_so(monkeypatch):
    monkeypatch.setattr(cpu, "cpu_has_avx2", lambda: False)
    monkeypatch.delenv(cpu.PATH_VARIABLE, raising=False)
    for variable in cpu.PINNED:
        monkeypatch.delenv(variable, raising=False)
    assert cpu.pin() == "native (this CPU has no AVX2 and FMA)"
    assert not any(variable in os.environ for variable in cpu.PINNED)


def test_native_leaves_the_environment_alone(monkeypatch):
    monkeypatch.setenv(cpu.PATH_VARIABLE, "native")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx512")
    assert cpu.pin().startswith("native")
    assert os.environ["ATEN_CPU_CAPABILITY"] == "avx512"
