"""Self-checks for the notebooks: on failure they say what was expected, what came out, and the likely mistake.

The expected values always come from an independent route (torch.distributions, autograd, a Monte Carlo average),
never from a typed-in number, so a check shows nothing that the notebook does not compute in front of the student.
"""
import torch


class SelfCheckError(AssertionError):
    """A self-check failed; the message says expected, got and the likely mistake."""


def _tensor(value) -> torch.Tensor:
    return torch.as_tensor(value, dtype=torch.float64).detach().cpu()


def _show(value: torch.Tensor) -> str:
    flat = value.flatten()
    shown = ", ".join(f"{v:.6g}" for v in flat[:4].tolist())
    more = ", ..." if flat.numel() > 4 else ""
    return shown if flat.numel() == 1 else f"[{shown}{more}] (shape {tuple(value.shape)})"


def diagnosis(got: torch.Tensor, expected: torch.Tensor, tolerance: float) -> str:
    """A likely mistake read off the numbers alone: a flipped sign, a constant offset, a constant factor."""
    if got.shape != expected.shape:
        return (f"the shape is {tuple(got.shape)} where {tuple(expected.shape)} was expected: check which axis you "
                "reduce")
    if not torch.isfinite(got).all():
        return "it is not finite: look for a log of 0 or of a negative number, or a division by 0"
    scale = expected.abs().clamp_min(1.0)
    if expected.abs().max() > tolerance and ((got + expected).abs() <= tolerance * scale).all():
        return "it has the opposite sign everywhere: check the sign of each term"
    offset = got - expected
    if got.numel() > 1 and (offset - offset.flatten()[0]).abs().max() <= tolerance * scale.max():
        return f"it is off by the same {offset.flatten()[0].item():.6g} everywhere: check the constant terms"
    ratio = got / expected.where(expected != 0, torch.ones_like(expected))
    if got.numel() > 1 and (expected != 0).all() and (ratio - ratio.flatten()[0]).abs().max() <= tolerance:
        return f"it is {ratio.flatten()[0].item():.6g} times the expected value everywhere: check the constant factors"
    return ""


def sentence(text: str, capital: bool = True) -> str:
    """`text` as a sentence: a capital first (unless it starts with a name of the code), a full stop unless it
    already ends with ., ? or !."""
    text = text.strip()
    return (text[:1].upper() if capital else text[:1]) + text[1:] + ("" if text.endswith((".", "?", "!")) else ".")


def check_close(got, expected, what: str, *, tolerance: float = 1e-6, hint: str = "") -> None:
    """Pass when `got` equals `expected` within tolerance * max(1, |expected|) elementwise; else say how it differs."""
    got_t, expected_t = _tensor(got), _tensor(expected)
    if got_t.shape == expected_t.shape and torch.isfinite(got_t).all():
        worst = ((got_t - expected_t).abs() / expected_t.abs().clamp_min(1.0)).max().item() if got_t.numel() else 0.0
        if worst <= tolerance:
            return
    reason = diagnosis(got_t, expected_t, tolerance)
    message = f"{what}: expected {_show(expected_t)}, got {_show(got_t)}."
    raise SelfCheckError(" ".join([message] + [sentence(part) for part in (reason, hint) if part]))


def check_that(condition, what: str, *, got=None, hint: str = "") -> None:
    """Pass when `condition` holds; else say what should hold, what came out, and the hint."""
    if bool(condition):
        return
    message = f"{what} does not hold" + (f": got {_show(_tensor(got))}" if got is not None else "")
    raise SelfCheckError(" ".join([sentence(message, capital=False)] + ([sentence(hint)] if hint else [])))
