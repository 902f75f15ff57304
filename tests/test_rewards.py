"""Composite reward: doctests, unit tests and properties (pure numpy, fast)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import training.rewards as R
from training.config import RewardConfig


def test_doctests():
    res = doctest.testmod(R, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert res.attempted >= 8 and res.failed == 0


def test_length_penalty_reference_values():
    cfg = RewardConfig()
    got = R.length_penalty(np.array([6, 7, 12, 5, 4, 3, 1, 0]), 6, cfg)
    assert got.tolist() == [0, -1.5, -1.5, -3, -4, -5, -5, -5]


def test_budget_penalty_role_coefficients():
    a = np.array([[2.0, 1.0, 1.0, 1.0, 1.0, 1.0]])  # sums to 7 units, T = 6
    ok = np.array([True])
    assert R.budget_penalty(a, ok, "reasoner").tolist() == [-2.0]
    assert R.budget_penalty(a, ok, "optimizer").tolist() == [-1.0]


def test_bonus_reference_rule_and_zero_allocation_guard():
    hm = np.array([[[0.9, 0.8, 0.5, 0.4, 0.2, 0.1]]])
    ha = np.ones((1, 1, 6))
    ok = np.array([True])
    # top-2 up by 0.2 each, bottom-2 down by 0.2 each -> 4 * 1.2
    a = np.array([[1.2, 1.2, 1.0, 1.0, 0.8, 0.8]])
    assert R.bonus_term(a, ha, hm, ok)[0] == pytest.approx(4.8)
    # bottom slots cut to zero earn nothing (the reference code's "new allocation not 0")
    a = np.array([[1.2, 1.2, 1.6, 2.0, 0.0, 0.0]])
    assert R.bonus_term(a, ha, hm, ok)[0] == pytest.approx(2.4)
    # moving the wrong way earns nothing
    a = np.array([[0.8, 0.8, 1.0, 1.0, 1.2, 1.2]])
    assert R.bonus_term(a, ha, hm, ok)[0] == 0.0
    # weight 0 turns it off
    assert R.bonus_term(a * 0 + [[1.2, 1.2, 1, 1, .8, .8]], ha, hm, ok, RewardConfig(bonus_weight=0))[0] == 0


def test_env_term_scale_and_failures():
    r = np.array([[0.5, 0.5], [1.0, 0.0]])
    assert R.env_term(r, np.array([True, True]), alpha=2.0).tolist() == [0.0, -2.0]
    assert R.env_term(r, np.array([False, False])).tolist() == [0.0, 0.0]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 5), min_size=6, max_size=6), st.integers(0, 12),
       st.booleans(), st.booleans(), st.booleans(), st.booleans())
def test_term_ranges(alloc, n, ok, o, c, b):
    a = np.array([alloc])
    okv = np.array([ok])
    cons = R.constraint_term(np.array([n]), a, okv, "reasoner")
    assert cons[0] <= 0
    f = R.format_term(np.array([o]), np.array([c]), np.array([b]), np.array([n]), 6)
    assert 0 <= f[0] <= 1
    bonus = R.bonus_term(a, np.ones((1, 3, 6)), np.random.default_rng(0).random((1, 3, 6)), okv)
    assert 0 <= bonus[0] <= 4 * 1.3 + 1e-9


def _prompts(role, n=4, budget=6.0):
    from training.config import RolloutConfig
    from training.rollouts import PromptSource

    cfg = RolloutConfig(families=["quadratic"], env_pool=16, budget=budget)
    return PromptSource(cfg, role, seed=3).batch(n, 1)


@pytest.mark.parametrize("role", ["reasoner", "optimizer"])
def test_score_teacher_beats_garbage_and_never_raises(role):
    from policies.prompts import format_target

    p = _prompts(role)
    target = p.teacher()
    good = [format_target(q, a) for q, a in zip(p.requests, target)]
    bad = ["", "<answer>[1, 2, x]</answer>", "<answer>[nan, 1, 1, 1, 1, 1]</answer>", "blah [1,2,3"]
    p2 = p.repeat(2)  # rows 0,0,1,1,...
    order = [i for i in range(8) if i % 2 == 0] + [i for i in range(8) if i % 2]
    texts = [None] * 8
    for j, i in enumerate(order):
        texts[i] = (good + bad)[j]
    total, terms, parsed = R.score(texts, p2.requests, p2.mroi)
    total, parsed.ok = total[order], parsed.ok[order]
    assert set(terms) == set(R.TERMS) | {"slip"}
    assert (terms["slip"] == 0).all()  # off by default
    assert parsed.ok[:4].all() and not parsed.ok[4:].any()
    assert total[:4].min() > total[4:].max()
    assert np.isfinite(total).all()
    assert parsed.parse_error_rate == 0.5


def test_score_is_scale_free():
    """Same environments at B=6 and B=600 (same answers in B/T units) score the same."""
    from policies.prompts import format_target

    p1, p2 = _prompts("reasoner", budget=6.0), _prompts("reasoner", budget=600.0)
    t1 = [format_target(q, a) for q, a in zip(p1.requests, p1.teacher())]
    t2 = [format_target(q, a) for q, a in zip(p2.requests, p2.teacher())]
    assert t1 == t2
    s1, _, _ = R.score(t1, p1.requests, p1.mroi)
    s2, _, _ = R.score(t2, p2.requests, p2.mroi)
    np.testing.assert_allclose(s1, s2, atol=1e-6)


def test_regret_term_scores_value_gain_towards_the_optimum():
    """The regret term: an answer closing the gap earns up to +1, one moving away down to -1,
    and a held plan 0, whatever the task's scale; score() wires it to the environment."""
    from policies.base import DecisionRequest
    from training.config import RewardConfig, RolloutConfig
    from training.rewards import regret_term, score
    from training.rollouts import PromptSource

    assert regret_term([10.0, 8.0, 9.0], [8.0] * 3, [10.0] * 3, [True] * 3).tolist() == [1.0, 0.0, 0.5]
    big = regret_term([1e6 * 9.0], [1e6 * 8.0], [1e6 * 10.0], [True])
    assert big.tolist() == [0.5]
    src = PromptSource(RolloutConfig(families=["quadratic"], env_pool=16), "reasoner", seed=3)
    p = src.batch(4, 1)
    best = p.teacher("local-model")
    worst = np.zeros_like(best)
    worst[:, 0] = p.budget  # everything on one slot
    texts_best = [f"<answer>[{','.join(f'{x / q.task.unit:.2f}' for x in b)}]</answer>" for b, q in zip(best, p.requests)]
    texts_worst = [f"<answer>[{','.join(f'{x / q.task.unit:.2f}' for x in b)}]</answer>" for b, q in zip(worst, p.requests)]
    cfg = RewardConfig(regret_weight=2.0)
    vb = p.best_value()
    tb, terms_b, _ = score(texts_best, p.requests, p.mroi, "absolute", cfg, value_fn=p.value, best_value=vb)
    tw, terms_w, _ = score(texts_worst, p.requests, p.mroi, "absolute", cfg, value_fn=p.value, best_value=vb)
    assert (terms_b["regret"] > terms_w["regret"]).all()
    assert terms_w["regret"].max() < 0 and terms_b["regret"].max() <= 2.0
    assert (terms_b["answer_regret"] < terms_w["answer_regret"]).all()
    # off by default: old configs score exactly as before
    t0, terms0, _ = score(texts_best, p.requests, p.mroi, "absolute", RewardConfig(), value_fn=p.value, best_value=vb)
    told, _, _ = score(texts_best, p.requests, p.mroi, "absolute", RewardConfig())
    np.testing.assert_allclose(t0, told)
    assert isinstance(p.requests[0], DecisionRequest)


def test_an_allocation_written_as_a_change_is_charged_for_the_plan_it_describes():
    """A signed answer the decoder rejects as not_a_change (here: the current plan written
    as the change) does not parse, so no env/bonus/regret; its budget penalty is the plan
    it describes, so it scores below the teacher's change and below holding still."""
    from policies.prompts import format_target

    p = _prompts("optimizer")
    T = p.requests[0].task.periods
    teacher = [format_target(q, a, "delta") for q, a in zip(p.requests, p.teacher())]
    restated = ["<answer>[" + ",".join(f"{b / q.task.unit:.2f}" for b in q.current) + "]</answer>"
                for q in p.requests]
    hold = ["<answer>[" + ",".join(["0.00"] * T) + "]</answer>"] * len(p.requests)
    totals = {}
    for name, texts in (("teacher", teacher), ("restated", restated), ("hold", hold)):
        totals[name], terms, parsed = R.score(texts, p.requests, p.mroi, encoding="delta")
        if name == "restated":
            assert not parsed.ok.any() and set(parsed.errors) == {"not_a_change"}
            assert (terms["env"] == 0).all() and (terms["bonus"] == 0).all()
            np.testing.assert_allclose(terms["constraint"], -T, atol=0.05)  # plan spends 2B: gap T, coef 1
    assert (totals["restated"] < totals["teacher"]).all() and (totals["restated"] < totals["hold"]).all()


@pytest.mark.parametrize("enc", ["delta-hint", "delta-hint-last"])
def test_a_copy_slip_scores_as_holding_minus_the_penalty_when_switched_on(enc):
    """A delta-hint answer that copies the hint one slot out of step: with slip_penalty on
    it earns the env of holding the current plan, no bonus or regret gain, and pays the
    penalty; off (the default), it is scored as the plan it describes. Copies of the hint
    are scored the same either way."""
    from policies.observations import misaligned_copy, shown_hint
    from training.config import RolloutConfig
    from training.rollouts import PromptSource

    cfg = RolloutConfig(families=["quadratic"], env_pool=16, periods=10, budget=10.0)
    p = PromptSource(cfg, "optimizer", seed=3).batch(6, 2)
    hints = [shown_hint(q) for q in p.requests]
    slipped = [h[1:] + [round(-sum(h[1:]), 2)] for h in hints]
    is_slip = np.array([misaligned_copy(a, h) for a, h in zip(slipped, hints)])
    assert is_slip.sum() >= 3
    answer = lambda xs: "<answer>[" + ",".join(f"{x:.2f}" for x in xs) + "]</answer>"  # noqa: E731
    texts = [answer(a) for a in slipped]
    copies = [answer(h) for h in hints]
    value = dict(value_fn=p.value, best_value=p.best_value())
    off_total, off, _ = R.score(texts, p.requests, p.mroi, enc, **value)
    on_cfg = RewardConfig(slip_penalty=0.5, regret_weight=1.0)
    on_total, on, parsed = R.score(texts, p.requests, p.mroi, enc, on_cfg, **value)
    assert parsed.ok.all()  # still a plan at inference: only the reward changes
    hold = R.hold_env_term(p.requests, on_cfg.env_alpha)
    np.testing.assert_allclose(on["env"][is_slip], hold[is_slip])
    assert (on["bonus"][is_slip] == 0).all() and (on["regret"][is_slip] == 0).all()
    np.testing.assert_allclose(on["value_gain"], off["value_gain"])  # diagnostics: the plan applied
    np.testing.assert_allclose(on["slip"], np.where(is_slip, -0.5, 0.0))
    np.testing.assert_allclose(on["env"][~is_slip], off["env"][~is_slip])
    assert (off["slip"] == 0).all() and not np.allclose(off["env"][is_slip], hold[is_slip])
    c_off, _, _ = R.score(copies, p.requests, p.mroi, enc, **value)
    c_on, _, _ = R.score(copies, p.requests, p.mroi, enc, RewardConfig(slip_penalty=0.5), **value)
    np.testing.assert_allclose(c_on, c_off)
