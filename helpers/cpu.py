"""One instruction-set path for PyTorch's CPU kernels, so that a run rounds the same way on every x86-64 CPU.

PyTorch's CPU wheels choose their kernels by the instruction set of the CPU in three places: ATen's own vectorised
kernels (elementwise operations, reductions, the optimisers' updates), MKL (matrix products) and oneDNN
(convolutions). Two CPUs that choose differently round differently, and a training run can amplify a difference in
the last bit until its result changes in the first digits: notebook 07's ReLU network ends its training at a loss of
0.153 on the AVX2 path and 0.093 on the AVX-512 path (README, "The same results on any machine").

Each library reads its choice from the environment once, at its first call, so `pin()` runs when `helpers` is
imported, before anything in it imports torch, and the notebooks import `helpers` before torch. The path pinned is
AVX2 with FMA, which most x86-64 CPUs made since about 2015 have (Intel Core from Haswell, AMD from Excavator and Zen;
some low-end models, Intel's Atom-based Celeron and Pentium among them, lack it):

* ATen: `ATEN_CPU_CAPABILITY=avx2`;
* MKL: `MKL_CBWR=AVX2`, its conditional numerical reproducibility mode on the AVX2 code branch, documented to return
  the same results on every Intel CPU with AVX2, given a fixed number of threads (oneMKL Developer Guide, "Getting
  Started with Conditional Numerical Reproducibility"); on the AMD EPYC of the README's table it gives the same bits
  as MKL's own choice there;
* oneDNN: `ONEDNN_MAX_CPU_ISA=AVX2`.

A CPU without AVX2 (or a machine that is not x86-64) keeps its own path, and `pin()` says so; `DGM_CPU_PATH=native`
keeps every CPU's own path, which is how the tests show what the pin changes. The threads are each notebook's
business: the ones that train in `make run` use one.
"""
import os
import platform
import sys
import warnings

PATH_VARIABLE = "DGM_CPU_PATH"   # "native": leave the instruction-set choice to each library
PINNED = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
NEEDED = ("AVX2", "FMA3")        # ATen's avx2 kernels are compiled with FMA as well


def cpu_has_avx2() -> bool:
    """True when this is an x86-64 CPU with AVX2 and FMA (read from numpy's CPU feature detection, which runs on
    Linux, macOS and Windows alike and does not import torch)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # numpy 1.x
        from numpy.core._multiarray_umath import __cpu_features__
    return all(__cpu_features__.get(feature, False) for feature in NEEDED)


def pin() -> str:
    """Set the environment for the pinned path, when this CPU can run it and DGM_CPU_PATH is not 'native'.
    Returns the path in effect: 'avx2', or 'native' with the reason."""
    if os.environ.get(PATH_VARIABLE, "").strip().lower() == "native":
        return f"native ({PATH_VARIABLE}=native)"
    if not cpu_has_avx2():
        return "native (this CPU has no AVX2 and FMA)"
    os.environ.update(PINNED)
    if "torch" in sys.modules:
        import torch

        if torch.backends.cpu.get_cpu_capability() != "AVX2":
            warnings.warn("torch was imported before helpers, so its kernels kept this CPU's instruction-set path: "
                          "import helpers first for results that repeat on other CPUs.", stacklevel=3)
            return "native (torch was imported before helpers)"
    return "avx2"


PATH = pin()
