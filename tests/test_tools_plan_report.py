"""Plan report: the table's data to the cent, the uplift with its interval, the fact-built
reason, and money formatting without float noise or exponents."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tools.money import format_amount, format_money, format_ratio, money_decimals, round_money
from tools.plan_report import PlanReport, extrapolation_warning, plan_report
from tools.task import load_task

HISTORY = [
    {"allocation": [40000, 30000, 30000], "mroi": [0.9, 2.8, 1.6]},
    {"allocation": [50000, 25000, 25000], "mroi": [0.7, 3.0, 1.8]},
    {"allocation": [45000, 27000, 28000], "mroi": [0.8, 2.6, 1.7]},
]


def _task(history=HISTORY, **kw):
    return load_task({"budget": 100000, "periods": 3, "labels": ["tv", "search", "social"],
                      "history": history, **kw})


def test_report_rows_reason_and_uplift():
    rep = plan_report(_task(), [25000, 47000, 28000.000000000004])
    assert rep.plan == [25000.0, 47000.0, 28000.0] and rep.current == [45000.0, 27000.0, 28000.0]
    assert [(c.label, c.change, c.share, c.mroi_last) for c in rep.changes] == [
        ("tv", -20000.0, 0.25, 0.8), ("search", 20000.0, 0.47, 2.6), ("social", 0.0, 0.28, 1.7)]
    assert rep.changes[0].mroi_predicted == 1.2  # no float noise
    assert rep.reason == ("moved 20,000 from tv (MROI 0.8) to search (2.6); "
                          "social unchanged: its MROI (1.7) is at the mean (1.7)")
    up = rep.expected_uplift
    assert up.low < up.value < up.high and up.value > 0
    assert rep.flags == [] and rep.notes == []
    # tv and search leave the spends the records saw (tv 40,000-50,000, search 25,000-30,000)
    assert rep.warnings == [
        "the plan funds tv 25,000 (records: 40,000 to 50,000), search 47,000 (records: 25,000 to 30,000) "
        "more than 10% outside the spends the records saw; the response there is extrapolated: "
        "test the change in steps"]
    schema = PlanReport.model_json_schema()
    assert {"current", "plan", "changes", "expected_uplift", "flags", "reason"} <= set(schema["properties"])


def test_uplift_is_the_integral_of_linear_mroi():
    # MROI exactly linear in spend: r_t(b) = a_t - s_t b, so the uplift is known in closed form.
    a, s = np.array([3.0, 2.0]), np.array([1e-4, 5e-5])
    allocs = [[10000, 10000], [12000, 8000], [9000, 11000]]
    hist = [{"allocation": b, "mroi": list(a - s * np.array(b))} for b in allocs]
    task = load_task({"budget": 20000, "periods": 2, "history": hist})
    plan, cur = np.array([8000.0, 12000.0]), np.array(allocs[-1], float)
    exact = float(np.sum(a * (plan - cur) - s / 2 * (plan**2 - cur**2)))
    rep = plan_report(task, plan)
    assert rep.expected_uplift.value == pytest.approx(exact, abs=0.01)
    assert rep.expected_uplift.low == pytest.approx(exact, abs=0.01)  # zero residual: zero width


def test_no_interval_when_a_moved_slot_never_varied_or_noise_is_unknown():
    hist = [dict(r, allocation=[r["allocation"][0], r["allocation"][1] + r["allocation"][2] - 28000, 28000])
            for r in HISTORY]
    rep = plan_report(_task(hist), [45000, 17000, 38000])
    assert rep.expected_uplift.low is None and rep.expected_uplift.high is None
    assert "social" in rep.warnings[0] and "never varied" in rep.warnings[0]
    # no slope, no prediction: the moved social slot shows n/a, the others a number
    assert [c.mroi_predicted is None for c in rep.changes] == [False, False, True]
    from graph.commands.plan_output import plan_table

    assert [line.split()[-1] for line in plan_table(rep).splitlines()[2:5]][2] == "n/a"
    rep = plan_report(_task(HISTORY[:2]), [40000, 35000, 25000])
    assert rep.expected_uplift.low is None and "too few records" in rep.warnings[0]


def test_report_on_return_records_says_mroi_was_estimated():
    hist = [{"allocation": b, "return": [2.0 * np.sqrt(x) * k for x, k in zip(b, (50, 300, 120))]}
            for b in (r["allocation"] for r in HISTORY)]
    rep = plan_report(_task(hist), [35000, 37000, 28000])
    assert rep.notes and rep.notes[0].startswith("MROI estimated from returns")
    assert rep.changes[1].mroi_last > rep.changes[0].mroi_last


def test_unchanged_slot_at_its_change_limit_says_so():
    rep = plan_report(_task(max_change=[1.0, 1.0, 0.0]), [25000, 47000, 28000])
    assert rep.reason.endswith("social unchanged: at its change limit")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1e7, allow_nan=False), min_size=1, max_size=20))
def test_round_money_sums_exactly_and_moves_each_value_under_a_cent(values):
    out = round_money(values, sum(values))
    assert sum(round(v * 100) for v in out) == round(sum(values) * 100)
    assert all(abs(o - v) < 0.01 + 1e-6 for o, v in zip(out, values))
    assert all(round(o, 2) == o for o in out)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 1e4, allow_nan=False), min_size=1, max_size=12), st.integers(2, 8))
def test_round_money_at_more_decimals_sums_exactly(values, decimals):
    out = round_money(values, sum(values), decimals)
    scale = 10 ** decimals
    assert sum(round(v * scale) for v in out) == round(sum(values) * scale)
    assert all(abs(o - v) < 1 / scale + 1e-6 for o, v in zip(out, values))


def test_money_formats():
    assert round_money([19000.000000000004, 80999.99999999999], 100000) == [19000.0, 81000.0]
    assert round_money([1 / 3] * 3, 1.0) == [0.34, 0.33, 0.33]
    assert format_money(1.064e5) == "106,400.00" and format_money(1e6, decimals=0) == "1,000,000"
    assert format_amount(20000.0) == "20,000" and format_amount(2.5) == "2.50"
    assert format_ratio(2.6) == "2.6" and format_ratio(0.000123) == "0.000123" and "e" not in format_ratio(1.5e7)


def test_extrapolation_warning_names_only_slots_outside_the_records():
    task = _task()
    assert extrapolation_warning(task, [44000, 28000, 28000]) is None  # inside every range
    assert extrapolation_warning(task, [36500, 33000, 30500]) is None  # within 10 % of the edges
    w = extrapolation_warning(task, [40000, 34000, 26000])
    assert w.startswith("the plan funds search 34,000 (records: 25,000 to 30,000) more than 10%")
    assert "tv" not in w and "social" not in w


def test_small_budgets_get_more_decimals_than_cents():
    """A budget written in millions (0.25) is not quantised to 4% of itself: amounts get
    decimals until they are exact to 0.01% of the budget, in the table and the JSON."""
    assert [money_decimals(b) for b in (250000, 100, 99, 6, 0.25, 1e-12)] == [2, 2, 3, 4, 5, 10]
    assert round_money([1 / 3] * 3, 1.0, decimals=4) == [0.3334, 0.3333, 0.3333]
    scale = 1e-6
    rep = plan_report(load_task({"budget": 0.1, "periods": 3, "labels": ["tv", "search", "social"],
                                 "history": [{"allocation": [x * scale for x in r["allocation"]],
                                              "mroi": r["mroi"]} for r in HISTORY]}),
                      [0.03, 0.045, 0.025])
    assert rep.decimals == 5 and rep.plan == [0.03, 0.045, 0.025] and rep.current == [0.045, 0.027, 0.028]
    assert "0.01800" in rep.reason  # search +0.018 to 5 decimals, not "0.02"


def test_reason_says_money_was_added_or_cut_when_the_budget_differs_from_the_current_total():
    grow = plan_report(_task(budget=120000), [45000, 45000, 30000])
    assert grow.reason.startswith("added 20,000 to search (MROI 2.6, +18,000), social (MROI 1.7, +2,000)"), grow.reason
    assert "(the budget is 20,000 above the current total)" in grow.reason
    cut = plan_report(_task(budget=90000), [35000, 27000, 28000])
    assert cut.reason.startswith("cut 10,000 from tv (MROI 0.8)"), cut.reason
    assert "below the current total" in cut.reason
    both = plan_report(_task(budget=110000), [40000, 45000, 25000])
    assert both.reason.startswith("moved 8,000 from tv (MROI 0.8, -5,000), social (MROI 1.7, -3,000) to search"), \
        both.reason  # what left a slot moved; the rest was added
    assert "; added 10,000 in all: the budget is 10,000 above the current total" in both.reason
    small = plan_report(_task(budget=100900), [45300, 27300, 28300])  # +300 each: under 1% of an equal share
    assert small.reason == ("no change: the plan keeps the current allocation (every slot moves by less than 1% "
                            "of an equal share; the budget is 900 above the current total)")


def test_the_plan_plot_marks_a_slot_whose_spend_never_varied():
    """Its curve is the fit's default slope, not evidence: dashed, and no MROI predicted."""
    from graph.commands.plan_plot import plan_figure
    from graph.commands.summaries import _pyplot

    hist = [{"allocation": [50.0, 30.0, 20.0], "mroi": [1.0, 2.0, 1.5]},
            {"allocation": [40.0, 30.0, 30.0], "mroi": [1.2, 2.1, 1.3]},
            {"allocation": [45.0, 30.0, 25.0], "mroi": [1.1, 1.9, 1.4]}]
    task = load_task({"budget": 100.0, "periods": 3, "history": hist, "labels": ["search", "social", "tv"]})
    fig = plan_figure(task, [40.0, 40.0, 20.0], None)
    try:
        titles = [ax.get_title() for ax in fig.axes[:3]]
        styles = [ax.get_lines()[0].get_linestyle() for ax in fig.axes[:3]]
    finally:
        _pyplot().close(fig)
    assert "not estimated" in titles[1] and "not estimated" not in titles[0] + titles[2]
    assert styles == ["-", "--", "-"]
    # unmoved, it keeps its MROI (the report predicts it too); the curve stays dashed
    fig = plan_figure(task, [45.0, 30.0, 25.0], None)
    try:
        assert "not estimated" not in fig.axes[1].get_title()
        assert fig.axes[1].get_lines()[0].get_linestyle() == "--"
    finally:
        _pyplot().close(fig)
