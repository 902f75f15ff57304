"""The generalist training distribution: fresh seeded tasks per prompt."""

import numpy as np
import pytest

from training.config import RolloutConfig
from training.rollouts import PromptSource

GEN = dict(families=["quadratic", "media"], periods_range=[2, 16], history_range=[2, 5],
           budget_range=[1.0, 1e6], noise_range=[0.0, 0.2], bounds_share=0.5)


@pytest.mark.parametrize("role", ["reasoner", "optimizer"])
def test_batches_are_seeded_feasible_and_varied(role):
    cfg = RolloutConfig(**GEN)
    a = PromptSource(cfg, role, seed=1).batch(6, 4)
    b = PromptSource(cfg, role, seed=1).batch(6, 4)
    np.testing.assert_array_equal(a.win_alloc, b.win_alloc)  # resume reproduces the batch
    np.testing.assert_allclose(a.win_alloc.sum(-1), a.budget[:, None] * np.ones(a.win_alloc.shape[1]), rtol=1e-6)
    Ts, budgets, bounded = set(), [], 0
    for step in range(1, 25):
        p = PromptSource(cfg, role, seed=1).batch(6, step)
        Ts.add(p.win_alloc.shape[-1])
        budgets += list(p.budget)
        bounded += sum(q.task.lower is not None or q.task.upper is not None for q in p.requests)
        t = p.teacher()
        np.testing.assert_allclose(t.sum(1), p.budget, rtol=1e-9)
        assert (t >= p.lower - 1e-9).all() and (t <= p.upper + 1e-9).all()
    assert len(Ts) > 5 and max(budgets) / min(budgets) > 100 and bounded > 0


def test_regret_inputs_follow_each_prompts_env():
    p = PromptSource(RolloutConfig(**GEN), "optimizer", seed=2).batch(5, 1)
    best = p.best_value()
    assert (p.value(p.win_alloc[:, -1]) <= best + 1e-9 * np.abs(best)).all()


def test_history_rows_can_spend_other_totals_than_the_budget():
    """Real logs' past periods rarely spent the planned B; a share of training histories
    does not either, and their MROI is observed at the spend actually shown."""
    cfg = RolloutConfig(**GEN, history_scale_range=[0.5, 1.5], history_scale_share=1.0)
    p = PromptSource(cfg, "reasoner", seed=3).batch(6, 2)
    q = PromptSource(cfg, "reasoner", seed=3).batch(6, 2)
    np.testing.assert_array_equal(p.win_alloc, q.win_alloc)  # still a pure function of the step
    ratio = p.win_alloc.sum(-1) / p.budget[:, None]
    assert ratio.min() >= 0.5 - 1e-9 and ratio.max() <= 1.5 + 1e-9 and ratio.std() > 0.05
    quiet = PromptSource(RolloutConfig(**{**GEN, "noise_range": [0.0, 0.0]}, history_scale_range=[0.5, 1.5],
                                       history_scale_share=1.0), "reasoner", seed=3).batch(6, 2)
    for i, env in enumerate(quiet.envs):
        np.testing.assert_allclose(quiet.win_mroi[i], env.mroi_any(quiet.win_alloc[i][None])[0], rtol=1e-9)
    t = p.teacher()  # the teacher still plans at B, inside the limits
    np.testing.assert_allclose(t.sum(1), p.budget, rtol=1e-9)
    off = PromptSource(RolloutConfig(**GEN), "reasoner", seed=3).batch(6, 2)
    np.testing.assert_allclose(off.win_alloc.sum(-1), off.budget[:, None] * np.ones(off.win_alloc.shape[1]), rtol=1e-6)


def test_concentrated_history_rows_ask_for_large_first_moves():
    """Real spend logs put most of a week in one or two channels (a Robyn week), and the
    teacher's first move from such a row goes to its trust-region limit (1 unit of B/T;
    beyond it when the row's total is far from B). With the Dirichlet history knob a share
    of training rows is like that; the default stream is unchanged."""
    from policies.observations import window_hint

    cfg = RolloutConfig(**GEN, history_concentration_range=[0.1, 0.3], history_concentration_share=1.0)
    p = PromptSource(cfg, "reasoner", seed=4).batch(8, 3)
    np.testing.assert_array_equal(p.win_alloc, PromptSource(cfg, "reasoner", seed=4).batch(8, 3).win_alloc)
    share = p.win_alloc / p.win_alloc.sum(-1, keepdims=True)
    assert np.median(share.max(-1)) > 0.5  # most rows: one slot holds most of the spend
    box = PromptSource(RolloutConfig(**GEN), "reasoner", seed=4).batch(8, 3)
    at_limit = [np.mean([np.abs(window_hint(q.window, q.task, q.current)).max() > 0.99 for q in s.requests])
                for s in (p, box)]
    assert at_limit[0] > 0.5 and at_limit[0] > at_limit[1]
    box_share = box.win_alloc / box.win_alloc.sum(-1, keepdims=True)
    T = box.win_alloc.shape[-1]
    assert (box_share <= 1.3 / T + 1e-9).all()  # the near-uniform box: within 30% of B/T
    unset = RolloutConfig(**GEN, history_concentration_share=1.0)  # no range: the old stream
    np.testing.assert_array_equal(PromptSource(unset, "reasoner", seed=4).batch(8, 3).win_alloc, box.win_alloc)


def test_history_concentration_env_option():
    from tools.envs import env_from_spec, make_envs

    env = make_envs("hill", 5, periods=4, budget=40.0, seed=1, history=3, history_concentration=0.2)
    np.testing.assert_allclose(env.hist_alloc.sum(-1), 40.0)
    assert (env.hist_alloc >= 0).all() and (env.hist_alloc.max(-1) > 0.5 * 40).mean() > 0.5
    again = env_from_spec(env.spec, 3)  # the option rides in the JSON spec
    np.testing.assert_array_equal(again.hist_alloc[0], env.hist_alloc[3])
    with pytest.raises(ValueError, match="history_concentration"):
        make_envs("hill", 2, history_concentration=0.0)


@pytest.mark.parametrize("bad, msg", [({"periods_range": [5, 3]}, "periods_range"),
                                      ({"history_range": [1, 4]}, "history rows"),
                                      ({"budget_range": [0, 10]}, "budget_range"),
                                      ({"noise_range": [0.2, 0.1]}, "noise_range"),
                                      ({"bounds_share": 1.5}, "bounds_share"),
                                      ({"history_scale_range": [0, 2]}, "history_scale_range"),
                                      ({"history_scale_share": -0.1}, "history_scale_share"),
                                      ({"history_concentration_range": [0, 1]}, "history_concentration_range"),
                                      ({"history_concentration_share": 2.0}, "history_concentration_share")])
def test_bad_ranges_name_the_field(bad, msg):
    with pytest.raises(ValueError, match=msg):
        RolloutConfig(**{**GEN, **bad}).validate()
