"""The diagnosis rules on scripted loss histories."""

from __future__ import annotations

import math

from engine.train.diagnose import Diagnoser, is_flat, is_overfitting


def test_overfitting_needs_rising_validation_while_training_falls():
    assert is_overfitting([2.0, 1.8, 1.9, 2.0, 2.1], [2.2, 1.9, 1.6, 1.3, 1.0])
    # Both rising is not overfitting (that is divergence or a bad learning rate).
    assert not is_overfitting([2.0, 1.8, 1.9, 2.0, 2.1], [1.0, 1.1, 1.2, 1.3, 1.4])
    # One bump is noise.
    assert not is_overfitting([2.0, 1.8, 1.9, 1.85, 1.8], [2.2, 1.9, 1.6, 1.3, 1.0])
    assert not is_overfitting([2.0, 2.1], [2.0, 1.0])


def test_flat_loss_after_warmup_is_underfitting():
    assert is_flat([3.0, 3.01, 2.99, 3.0, 2.995, 3.0, 2.99, 3.0, 3.0, 2.98, 2.99, 2.99])
    assert not is_flat([3.0, 2.8, 2.6, 2.4, 2.2, 2.0, 1.9, 1.8, 1.7, 1.6, 1.5, 1.4])
    assert not is_flat([3.0, 3.0, 3.0])  # too few steps to judge


def test_the_diagnoser_speaks_once_per_problem_with_advice():
    d = Diagnoser(warmup_steps=2, learning_rate=2e-4, method="lora")
    said = []
    step = 0
    for val, train in [(2.0, 2.2), (1.8, 1.9), (1.9, 1.6), (2.0, 1.3), (2.1, 1.0), (2.2, 0.8)]:
        for _ in range(3):
            step += 1
            assert d.on_step(step, train) is None
        diagnosis = d.on_eval(step, val)
        if diagnosis:
            said.append(diagnosis)
    assert [x.kind for x in said] == ["overfitting"]
    assert said[0].step == 15
    assert "learning_rate" in said[0].advice and "lora_dropout" in said[0].advice


def test_a_flat_run_is_called_underfitting_only_after_warmup():
    d = Diagnoser(warmup_steps=20, learning_rate=1e-5, method="lora")
    for step in range(1, 21):
        assert d.on_step(step, 3.0) is None
    assert d.check_flat(20) is None  # the warm-up does not count
    for step in range(21, 33):
        d.on_step(step, 3.0 - 0.001 * step)
    diagnosis = d.check_flat(32)
    assert diagnosis is not None and diagnosis.kind == "underfitting"
    assert "raise learning_rate (now 1e-05)" in diagnosis.advice
    assert d.check_flat(33) is None


def test_a_non_finite_loss_is_divergence():
    d = Diagnoser(warmup_steps=0, learning_rate=1e-3, method="full")
    assert d.on_step(1, 2.0) is None
    for bad in (math.nan, math.inf):
        diagnosis = d.on_step(2, bad)
        assert diagnosis.kind == "divergence" and "2.5e-04" in diagnosis.advice or "0.00025" in diagnosis.advice
