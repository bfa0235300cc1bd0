"""The autograder: runs untrusted submissions in a sandbox and grades them."""

# First: helpers pins PyTorch's CPU kernels to one instruction-set path before torch is imported (helpers/cpu.py), so
# that the grader's own measurements (a model's Fréchet distance, say) round the same way on every machine.
import helpers  # noqa: F401
