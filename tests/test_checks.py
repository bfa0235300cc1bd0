"""The self-checks' messages: what was expected, what came out, the likely mistake, as sentences."""
import pytest
import torch

from helpers.checks import SelfCheckError, check_close, check_that


def message_of(check, *args, **kwargs) -> str:
    with pytest.raises(SelfCheckError) as failed:
        check(*args, **kwargs)
    return str(failed.value)


def test_a_hint_that_asks_a_question_ends_with_its_question_mark():
    text = message_of(check_that, False, "the error", got=2.0, hint="what is the variance of one?")
    assert text == "the error does not hold: got 2. What is the variance of one?"
    text = message_of(check_close, 1.0, 0.0, "kl", hint="look at the constant term.")
    assert text.endswith("Look at the constant term.") and ".." not in text
    assert message_of(check_that, False, "f", hint="dL/dW has one entry per weight").endswith(" dL/dW has one entry "
                                                                                        "per weight.")
    assert message_of(check_that, False, "f", hint="p_data weighs 'real'").endswith(" p_data weighs 'real'.")


def test_the_likely_mistake_is_read_off_the_numbers():
    expected = torch.tensor([1.0, 2.0, 3.0])
    assert "opposite sign" in message_of(check_close, -expected, expected, "f")
    assert "off by the same 0.5" in message_of(check_close, expected + 0.5, expected, "f")
    assert "It is 2 times the expected value" in message_of(check_close, 2 * expected, expected, "f")
    assert "The shape is (3, 1) where (3,) was expected" in message_of(check_close, expected[:, None], expected, "f")
    assert "a factor 1/2 is missing" in message_of(check_close, torch.tensor(1.5), torch.tensor(0.75), "f")
    assert "a mean where a sum over 20 entries" in message_of(check_close, expected / 20, expected, "f")
    assert "a square root is missing" in message_of(check_close, torch.tensor([0.04, 4.0]), [0.2, 2.0], "f")
    assert "square root too many" in message_of(check_close, torch.tensor([0.2, 2.0]), [0.04, 4.0], "f")
    assert message_of(check_close, 5.0, 0.3, "f") == "f: expected 0.3, got 5."      # no story for a factor 16.7


def test_a_right_value_passes():
    check_close(torch.tensor([1.0, 2.0]), [1.0, 2.0], "f")
    check_that(True, "a condition")


def test_a_kl_looked_up_in_torch_distributions_fails_the_self_check_as_the_grader_would_score_it():
    from torch.distributions import Normal, kl_divergence

    from helpers.checks import SelfCheckError, by_hand

    def looked_up(m1, s1, m2, s2):
        return kl_divergence(Normal(m1, s1), Normal(m2, s2))

    def computed(m1, s1, m2, s2):
        return (m1 - m2) ** 2 + s1 * s2          # any arithmetic of its own passes through untouched

    args = (torch.tensor(0.0), torch.tensor(1.0), torch.tensor(1.0), torch.tensor(2.0))
    with pytest.raises(SelfCheckError, match="looked_up calls torch.distributions' kl_divergence, which the grader"):
        by_hand(looked_up, *args)
    assert by_hand(computed, *args) == 3.0          # (0 - 1)^2 + 1 * 2
    assert torch.allclose(looked_up(*args), kl_divergence(Normal(*args[:2]), Normal(*args[2:])))   # restored after


def test_a_check_that_knows_the_likely_mistake_says_it_alone():
    with pytest.raises(SelfCheckError) as guessed:
        check_close(torch.tensor([3.0, 8.0]), torch.tensor([1.5, 4.0]), "norms", hint="clear the gradients")
    with pytest.raises(SelfCheckError) as told:
        check_close(torch.tensor([3.0, 8.0]), torch.tensor([1.5, 4.0]), "norms", hint="clear the gradients",
                    guess=False)
    assert "factor 1/2" in str(guessed.value) and "Clear the gradients" in str(guessed.value)
    assert "factor" not in str(told.value) and str(told.value).endswith("Clear the gradients.")
