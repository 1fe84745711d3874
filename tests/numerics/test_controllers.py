"""Step-size controllers, alone and through the adaptive loop."""

import pytest
import torch

import torchnode
from torchnode._numerics.controllers import (
    PI_ALPHA_K,
    PI_BETA_K,
    SAFETY,
    PIController,
)

F64 = torch.float64


def test_pi_first_accepted_step_takes_the_integral_factor():
    pi = PIController(5)
    assert pi.propose(1e-3, True) == pytest.approx(SAFETY * 1e-3 ** (-1 / 5))
    # From the second accepted step on, the remembered error enters.
    expected = SAFETY * 0.5 ** (-PI_ALPHA_K / 5) * 1e-3 ** (PI_BETA_K / 5)
    assert pi.propose(0.5, True) == pytest.approx(expected)
    pi.reset()
    assert pi.propose(1e-3, True) == pytest.approx(SAFETY * 1e-3 ** (-1 / 5))


def test_damped_start_is_hairers_first_step():
    pi = PIController(5, damped_start=True)
    expected = SAFETY * 1e-3 ** (-PI_ALPHA_K / 5) * 1e-4 ** (PI_BETA_K / 5)
    assert pi.propose(1e-3, True) == pytest.approx(expected)


def test_no_growth_on_the_first_acceptance_after_a_rejection():
    pi = PIController(5)
    assert pi.propose(4.0, False) < 1.0
    assert pi.propose(1e-6, True) == 1.0


def test_a_step_cut_short_by_step_t_keeps_the_proposal_it_cut():
    # A smooth oscillator, 20 stops about ten steps apart: each costs at most
    # the step cut short to reach it, and no regrowth afterwards. Restarting
    # from the cut step's own proposal costs 19 extra steps here; keeping the
    # proposal it cut, 13.
    def f(t, y):
        return torch.stack([y[1], -y[0]])

    y0 = torch.tensor([1.0, 0.0], dtype=F64)
    t = torch.tensor([0.0, 20.0], dtype=F64)
    plain = torchnode.solve(f, y0, t, rtol=1e-8, atol=1e-8)
    stops = torch.linspace(0.5, 19.5, 20, dtype=F64) + 0.0123
    cut = torchnode.solve(f, y0, t, rtol=1e-8, atol=1e-8, options={"step_t": stops})
    assert cut.stats.n_steps - plain.stats.n_steps <= 0.7 * len(stops)
    torch.testing.assert_close(cut.ys[-1], plain.ys[-1], rtol=0, atol=1e-7)
