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
    """A likely mistake read off the numbers alone: a flipped sign, a constant offset, a square or a square root, a
    constant factor (a 1/2, a sum for a mean)."""
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
    # a square or a square root (a constant ratio only where all values are equal): the values themselves, away from
    # 0 and 1 where it would not show
    away = (expected.abs() - 1).abs() > 10 * tolerance
    if away.any() and (expected[away] > 0).all():
        if ((got[away] - expected[away] ** 2).abs() <= tolerance * expected[away].clamp_min(1.0) ** 2).all():
            return ("it is the square of the expected value: a square root is missing (a variance where a standard "
                    "deviation is asked?)")
        if (got[away] >= 0).all() and ((got[away] - expected[away].sqrt()).abs() <= tolerance).all():
            return "it is the square root of the expected value: a square root too many"
    ratio = got / expected.where(expected != 0, torch.ones_like(expected))
    if (expected != 0).all() and (ratio - ratio.flatten()[0]).abs().max() <= tolerance:
        factor = ratio.flatten()[0].item()
        named = factor_named(factor, tolerance)
        if got.numel() > 1 or named:
            everywhere = " everywhere" if got.numel() > 1 else ""
            return f"it is {factor:.6g} times the expected value{everywhere}: {named or 'check the constant factors'}"
    return ""


def factor_named(factor: float, tolerance: float) -> str:
    """The likely mistake behind a constant factor between got and expected: a 1/2, or a sum for a mean (or the
    reverse) over an axis of that many entries; '' for a factor with no likely story."""
    for k in range(2, 100_001):
        if abs(factor - k) <= tolerance * k:
            return ("a factor 1/2 is missing" if k == 2 else
                    f"a sum where a mean over {k} entries is asked, or a constant factor {k} too many")
        if abs(factor - 1 / k) <= tolerance / k:
            return ("a factor 1/2 too many, or a 2 missing" if k == 2 else
                    f"a mean where a sum over {k} entries is asked, or a constant factor 1/{k} too many")
        if k > abs(factor) + 1 and k > 1 / max(abs(factor), 1e-12) + 1:
            break
    return ""


def sentence(text: str, capital: bool = True) -> str:
    """`text` as a sentence: a capital first (unless it starts with a name of the code), a full stop unless it
    already ends with ., ? or !."""
    text = text.strip()
    code = any(mark in text.split(" ", 1)[0] for mark in "_/()^.=")    # a name of the code keeps its case
    return (text[:1].upper() if capital and not code else text[:1]) + text[1:] + (
        "" if text.endswith((".", "?", "!")) else ".")


def check_close(got, expected, what: str, *, tolerance: float = 1e-6, hint: str = "", guess: bool = True) -> None:
    """Pass when `got` equals `expected` within tolerance * max(1, |expected|) elementwise; else say how it differs
    (`guess=False`: the hint alone, where the check knows the likely mistake better than the numbers tell)."""
    got_t, expected_t = _tensor(got), _tensor(expected)
    if got_t.shape == expected_t.shape and torch.isfinite(got_t).all():
        worst = ((got_t - expected_t).abs() / expected_t.abs().clamp_min(1.0)).max().item() if got_t.numel() else 0.0
        if worst <= tolerance:
            return
    reason = diagnosis(got_t, expected_t, tolerance) if guess or not hint else ""
    message = f"{what}: expected {_show(expected_t)}, got {_show(got_t)}."
    raise SelfCheckError(" ".join([message] + [sentence(part) for part in (reason, hint) if part]))


def check_that(condition, what: str, *, got=None, hint: str = "") -> None:
    """Pass when `condition` holds; else say what should hold, what came out, and the hint."""
    if bool(condition):
        return
    message = f"{what} does not hold" + (f": got {_show(_tensor(got))}" if got is not None else "")
    raise SelfCheckError(" ".join([sentence(message, capital=False)] + ([sentence(hint)] if hint else [])))


def by_hand(function, *args):
    """function(*args) with torch.distributions' closed-form KLs switched off, as the grader calls a KL answer: a
    divergence the question asks you to derive must be computed, not looked up."""
    from torch.distributions import kl

    saved = dict(kl._KL_REGISTRY)
    kl._KL_REGISTRY.clear()
    kl._KL_MEMOIZE.clear()
    try:
        return function(*args)
    except NotImplementedError as error:
        if "No KL(p || q) is implemented" not in str(error):
            raise
        raise SelfCheckError(sentence(f"{function.__name__} calls torch.distributions' kl_divergence, which the "
                                      "grader switches off when it tests this answer: compute the closed form you "
                                      "derived")) from None
    finally:
        kl._KL_REGISTRY.update(saved)
        kl._KL_MEMOIZE.clear()
