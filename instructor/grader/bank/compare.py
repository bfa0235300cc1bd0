"""Comparisons the hidden tests share: a student's outputs against expected values, in the grader's words.

A message says what is wrong and how much, never the expected values themselves: those follow DETAIL, and the
feedback shows them only when the instructor asks for it (`make grade GRADE_ARGS=--show-expected`).
"""
import math

import torch

DETAIL = " || expected "


def as_tensor(value) -> torch.Tensor | None:
    """The output as a float64 tensor, or None when it is not numbers."""
    try:
        return torch.as_tensor(value, dtype=torch.float64).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        return None


def compare(got, expected, what: str, *, rtol: float = 1e-6, atol: float = 1e-9) -> str | None:
    """None when `got` equals `expected` elementwise within atol + rtol * |expected|; else a message."""
    expected = torch.as_tensor(expected, dtype=torch.float64)
    value = as_tensor(got)
    if value is None:
        return f"{what}: the function returned {type(got).__name__}, not numbers"
    if value.shape != expected.shape:
        return f"{what}: the result has shape {tuple(value.shape)} where {tuple(expected.shape)} was expected"
    same_infinity = torch.isinf(expected) & (value == expected)
    close = same_infinity | ((value - expected).abs() <= atol + rtol * expected.abs())
    if bool(close.all()):
        return None
    wrong = (~close).nonzero()
    first = tuple(wrong[0].tolist())
    finite = torch.isfinite(value) & torch.isfinite(expected)
    errors = ((value - expected).abs() / expected.abs().clamp_min(1e-12))[finite & ~close]
    worst = f", largest relative error {errors.max().item():.2g}" if errors.numel() else ", not finite"
    return (f"{what}: wrong for {len(wrong)} of {expected.numel()} fresh inputs{worst}"
            f"{DETAIL}{expected[first].item():.6g} at index {first}, got {value[first].item():.6g}")


def random_covariances(rng: torch.Generator, count: int, dim: int) -> torch.Tensor:
    """`count` well-conditioned random covariance matrices of size dim x dim (float64)."""
    factors = torch.randn(count, dim, dim, generator=rng, dtype=torch.float64)
    return factors @ factors.mT / dim + 0.3 * torch.eye(dim, dtype=torch.float64)


def finite_number(value) -> float | None:
    """`value` as a float when it is one finite number, else None."""
    tensor = as_tensor(value)
    if tensor is None or tensor.numel() != 1 or not math.isfinite(tensor.item()):
        return None
    return tensor.item()


def first_problem(problems) -> str | None:
    """The first message of an iterable of comparisons (None for each that passed): what a check with several
    cases reports."""
    return next((problem for problem in problems if problem), None)
