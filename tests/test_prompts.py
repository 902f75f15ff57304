"""Prompt encoders and the decoder: fuzzed (never raises, typed failures) and round-trip."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.base import DecisionRequest
from policies.prompts import (
    DEFAULT_ENCODING,
    DELTA_ENCODINGS,
    ENCODINGS,
    HINT_ENCODINGS,
    NEG_TOL,
    PARSE_ERRORS,
    ParseError,
    decode,
    encode,
    error_code,
    format_target,
    make_request,
)
from policies.observations import mroi_scale
from tools.task import Record, Task


def make_task(T=6, B=6.0, H=3, seed=0, bounds=False) -> Task:
    rng = np.random.default_rng(seed)
    hist = []
    for _ in range(H):
        a = rng.uniform(0.7, 1.3, T)
        a = a / a.sum() * B
        hist.append(Record(allocation=a.tolist(), mroi=rng.uniform(0, 1, T).tolist()))
    kw = {}
    if bounds:
        kw = {"lower": [0.1 * B / T] * T, "upper": [2 * B / T] * (T - 1) + [float("inf")]}
    return Task(budget=B, periods=T, history=hist, **kw)


REQ_R = make_request("reasoner", make_task())
REQ_O = make_request("optimizer", make_task())


def test_defaults():
    assert DEFAULT_ENCODING == {"reasoner": "absolute", "optimizer": "delta"}


@pytest.mark.parametrize("role", ["reasoner", "optimizer"])
@pytest.mark.parametrize("enc", ENCODINGS)
def test_encode_shape_and_scale_free(role, enc):
    t1 = make_task(B=6.0)
    t2 = Task(budget=6e5, periods=6, history=[
        Record(allocation=[b * 1e5 for b in r.allocation], mroi=[m * 7 for m in r.mroi])
        for r in t1.history])
    m1 = encode(make_request(role, t1), enc)
    m2 = encode(make_request(role, t2), enc)
    assert [m["role"] for m in m1] == ["system", "user"]
    assert m1 == m2  # same prompt whatever the budget / MROI scale
    user = m1[1]["content"]
    assert "lo=" not in user and "hi=" not in user
    assert ("gap=" in user) == (enc in DELTA_ENCODINGS)
    assert ("fall=" in user) == (enc == "delta-slope")
    assert ("hint=" in user) == (enc in HINT_ENCODINGS)
    assert ("(current)" in user) == (role == "optimizer")


def test_fall_line_is_the_teachers_slope_in_prompt_units():
    """``delta-slope`` shows -slope x (B/T) / scale; on an exactly linear window it is exact."""
    T, B = 3, 3.0
    slopes = np.array([-0.5, -1.0, -2.0])  # MROI per unit of spend (unit = B/T = 1)
    allocs = [[0.8, 1.0, 1.2], [1.2, 0.9, 0.9], [1.0, 1.1, 0.9]]
    hist = [Record(allocation=a, mroi=(3.0 + slopes * np.array(a)).tolist()) for a in allocs]
    task = Task(budget=B, periods=T, history=hist)
    user = encode(make_request("optimizer", task), "delta-slope")[1]["content"]
    scale = max(abs(m) for r in hist for m in r.mroi)
    want = [-s / scale for s in slopes]
    fall = [float(x) for x in user.split("fall=[")[1].split("]")[0].split(",")]
    assert fall == pytest.approx(want, abs=0.006)
    # the answer means the same as under delta
    d_slope = decode("<answer>[0.5,-0.5,0]</answer>", make_request("optimizer", task), "delta-slope")
    d_delta = decode("<answer>[0.5,-0.5,0]</answer>", make_request("optimizer", task), "delta")
    assert d_slope.allocation == d_delta.allocation


def test_hint_line_is_the_local_model_change_and_copying_it_gives_that_plan():
    """``delta-hint`` shows the local-model plan minus the current plan (units of B/T),
    bounds included; an answer that copies the hint decodes to the local-model plan."""
    from policies.baselines import local_model

    for bounds in (False, True):
        task = make_task(T=5, B=2e5, H=4, seed=3, bounds=bounds)
        req = make_request("optimizer", task)
        user = encode(req, "delta-hint")[1]["content"]
        hint = user.split("hint=[")[1].split("]")[0]
        wa = np.array([[r.allocation for r in req.window]])
        wm = np.array([[r.mroi for r in req.window]])
        plan = local_model(wa, wm, np.array([task.budget]),
                           None if task.lower is None else np.array([task.lower]),
                           None if task.upper is None else np.array([task.upper]))[0]
        want = (plan - wa[0, -1]) / task.unit
        assert [float(x) for x in hint.split(",")] == pytest.approx(want.tolist(), abs=0.0051)
        got = decode(f"<answer>[{hint}]</answer>", req, "delta-hint").allocation
        assert got == pytest.approx(plan.tolist(), abs=0.0051 * task.unit * 1.01)


@pytest.mark.parametrize("enc", ["delta", "delta-slope", "delta-hint", "delta-hint-last"])
def test_a_change_starts_from_the_last_row_at_this_budget(enc):
    """Real logs' past periods spend 0.02-2.4x this budget: a signed change starts from
    the last row rescaled to B (its mix kept), the prompt says so, and the hint is a
    change from there (it sums to 0); rows already at B are used as they are."""
    task = make_task(T=4, B=4e5, H=3, seed=1)
    half = Task(budget=task.budget, periods=4, history=task.history[:-1] + [
        Record(allocation=[0.5 * b for b in task.history[-1].allocation], mroi=task.history[-1].mroi)])
    req = make_request("reasoner", half)
    assert req.current == pytest.approx(task.history[-1].allocation)
    user = encode(req, enc)[1]["content"]
    assert "Current b at this budget: " in user
    assert "Current b at this budget" not in encode(make_request("reasoner", task), enc)[1]["content"]
    got = decode("<answer>[0,0,0,0]</answer>", req, enc).allocation
    assert got == pytest.approx(task.history[-1].allocation)
    if enc in HINT_ENCODINGS:
        hint = [float(x) for x in user.split("hint=[")[1].split("]")[0].split(",")]
        assert sum(hint) == pytest.approx(0.0, abs=0.03)


@pytest.mark.parametrize("role", ["reasoner", "optimizer"])
def test_delta_hint_last_is_delta_hint_with_the_hint_line_last(role):
    """Same lines and system prompt as delta-hint; only the hint moves, to just before
    the question, after the current row (written when the last record is not at B)."""
    task = make_task(T=5, B=5e3, H=3, seed=1)
    off = Task(budget=task.budget, periods=5, history=task.history[:-1] + [
        Record(allocation=[0.4 * b for b in task.history[-1].allocation], mroi=task.history[-1].mroi)])
    for t in (task, off):
        req = make_request(role, t)
        (s1, u1), (s2, u2) = (encode(req, e) for e in ("delta-hint", "delta-hint-last"))
        assert s1 == s2 and sorted(u1["content"].splitlines()) == sorted(u2["content"].splitlines())
        lines = u2["content"].splitlines()
        assert lines[-2].startswith("hint=") and lines[-1] == "Give the change d."
        assert ("Current b at this budget" in u2["content"]) == (t is off)
        hint = lines[-2][len("hint=["):-1]
        assert decode(f"<answer>[{hint}]</answer>", req, "delta-hint-last").allocation == pytest.approx(
            decode(f"<answer>[{hint}]</answer>", req, "delta-hint").allocation)


def test_bounds_shown_only_when_present():
    user = encode(make_request("reasoner", make_task(bounds=True)))[1]["content"]
    assert "lo=[0.10,0.10" in user and "hi=[2.00" in user and "-]" in user


def test_mroi_normalised_to_max():
    t = make_task()
    s = mroi_scale(t.history)
    assert s == max(abs(v) for r in t.history for v in r.mroi)
    assert "1.00" in encode(make_request("reasoner", t))[1]["content"]


def test_optimizer_window_is_last_w():
    t = make_task(H=5)
    r = make_request("optimizer", t, w=3)
    assert r.window == t.history[-3:]


def test_decode_basic_absolute_and_reason():
    t = Task(budget=600.0, periods=3, history=[Record(allocation=[200, 200, 200], mroi=[1, 1, 1])])
    r = make_request("reasoner", t)
    d = decode("<reason>slot 1 is best</reason><answer>[1.5, 1.0, 0.5]</answer>", r)
    assert d.error is None and d.allocation == pytest.approx([300, 200, 100])
    assert d.meta["reason"] == "slot 1 is best"


def test_decode_delta_applies_to_current():
    t = Task(budget=600.0, periods=3, history=[Record(allocation=[100, 200, 300], mroi=[1, 1, 1])])
    r = make_request("optimizer", t)
    d = decode("<answer>[0.50, 0, -0.50]</answer>", r, "delta")
    assert d.error is None and d.allocation == pytest.approx([200, 200, 200])


def test_decode_tolerates_missing_close_tag_after_list():
    d = decode("<answer>[1, 1, 1, 1, 1, 1]", REQ_R)
    assert d.error is None


@pytest.mark.parametrize("text,code", [
    ("no tags at all [1,1,1,1,1,1]", "missing_tags"),
    ("<answer>[1, 1, 1", "missing_tags"),
    ("<answer>[1, 1, 1, 1, 1]</answer>", "wrong_length"),
    ("<answer>[]</answer>", "wrong_length"),
    ("<answer>[1, 1, x, 1, 1, 1]</answer>", "non_numeric"),
    ("<answer>[1, 1, nan, 1, 1, 1]</answer>", "non_finite"),
    ("<answer>[1, 1, 1e999, 1, 1, 1]</answer>", "non_finite"),
    ("<answer>[1, 1, -0.5, 1, 1, 1]</answer>", "negative"),
])
def test_decode_typed_errors(text, code):
    d = decode(text, REQ_R, "absolute")
    assert d.allocation is None and error_code(d.error) == code
    assert d.meta["error_code"] == code


def test_wrong_length_message():
    d = decode("<answer>[1, 1, 1, 1, 1]</answer>", REQ_R)
    assert d.error == "wrong_length: expected 6 numbers, got 5"


def test_delta_cut_below_zero_is_clipped_not_an_error():
    cur = REQ_O.window[-1].allocation
    d = decode("<answer>[-5, 0, 0, 0, 0, 0]</answer>", REQ_O, "delta")
    assert d.error is None and d.meta["clipped_to_zero"] == [1]
    assert d.allocation[0] == 0.0 and d.allocation[1:] == pytest.approx(cur[1:])
    # absolute answers with a negative number stay an error
    assert error_code(decode("<answer>[-5, 1, 1, 1, 1, 1]</answer>", REQ_O, "absolute").error) \
        == ParseError.NEGATIVE.value


@pytest.mark.parametrize("enc", ["delta", "delta-hint"])
def test_delta_answer_that_restates_the_allocation_is_not_a_change(enc):
    # The Reasoner's Robyn failure: the current row written where the change belongs.
    # Rescaled, it would quietly be the current plan again; it must be an error instead.
    cur_units = [b / REQ_O.task.unit for b in REQ_O.current]
    text = "<answer>[" + ",".join(f"{c:.2f}" for c in cur_units) + "]</answer>"
    d = decode(text, REQ_O, enc)
    assert d.allocation is None and error_code(d.error) == ParseError.NOT_A_CHANGE.value
    assert "units of B/T" in d.error and "allocation written as a change" in d.error
    # a move without its counter-move (a copy slip) is still a change for the budget tool
    assert decode("<answer>[1,0,0,0,0,0]</answer>", REQ_O, enc).error is None
    # the plan it describes counts: a large cut clipped at 0 spends what it spends
    assert decode("<answer>[-5,0,0,0,0,0]</answer>", REQ_O, enc).error is None
    # and the check is two-sided: cutting everything is not a change either
    cut = "<answer>[" + ",".join(f"{-c:.2f}" for c in cur_units) + "]</answer>"
    assert error_code(decode(cut, REQ_O, enc).error) == ParseError.NOT_A_CHANGE.value
    # absolute answers are allocations: the check does not apply
    assert decode(text, REQ_O, "absolute").error is None


# ---- fuzz ------------------------------------------------------------------------------
PIECES = st.sampled_from([
    "<answer>", "</answer>", "<reason>", "</reason>", "[", "]", ",", " ", "\n", ";",
    "1", "0.5", "-0.3", "+2", "1e308", "1e999", "-1e999", "nan", "inf", "-inf", "NaN",
    ".", "e", "-", "0", "999999999999999999999", "0.00", "-0.00", "x", "<", ">", "/",
])
ADVERSARIAL = st.lists(PIECES, max_size=40).map("".join)


def _check(d, T):
    if d.allocation is None:
        assert d.error and error_code(d.error) in PARSE_ERRORS
    else:
        assert d.error is None
        assert len(d.allocation) == T
        assert all(math.isfinite(a) and a >= 0 for a in d.allocation)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(st.text(max_size=200), ADVERSARIAL),
       role=st.sampled_from(["reasoner", "optimizer"]), enc=st.sampled_from(ENCODINGS))
def test_decode_fuzz_never_raises(text, role, enc):
    req = REQ_R if role == "reasoner" else REQ_O
    _check(decode(text, req, enc), 6)


@settings(max_examples=200, deadline=None)
@given(nums=st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                               st.integers(-10**30, 10**30)), max_size=8),
       enc=st.sampled_from(ENCODINGS))
def test_decode_fuzz_number_lists(nums, enc):
    text = "<answer>[" + ", ".join(str(n) for n in nums) + "]</answer>"
    _check(decode(text, REQ_O, enc), 6)


@settings(max_examples=200, deadline=None)
@given(T=st.integers(1, 24), B=st.floats(1e-3, 1e7), seed=st.integers(0, 10**6),
       role=st.sampled_from(["reasoner", "optimizer"]), enc=st.sampled_from(ENCODINGS),
       zeros=st.booleans())
def test_format_target_round_trip(T, B, seed, role, enc, zeros):
    task = make_task(T=T, B=B, seed=seed)
    req = make_request(role, task)
    rng = np.random.default_rng(seed)
    target = rng.dirichlet(np.ones(T)) * B
    if zeros and T > 1:  # a corner plan; targets are plans, so it still spends B
        target[rng.integers(T)] = 0.0
        target *= B / target.sum()
    d = decode(format_target(req, target, enc), req, enc)
    assert d.error is None, d.error
    tol = (0.005 + 1e-9) * task.unit
    assert np.allclose(d.allocation, target, atol=tol, rtol=1e-9)


def test_format_target_with_reason_round_trips():
    target = [1.2, 0.8, 1, 1, 1, 1]
    txt = format_target(REQ_R, target, reason="shift to slot 1")
    assert txt.startswith("<reason>shift to slot 1</reason><answer>[1.20,0.80")
    assert decode(txt, REQ_R).allocation == pytest.approx(target, abs=0.006)


def test_empty_window_delta_uses_uniform():
    t = Task(budget=6.0, periods=6)
    r = DecisionRequest("reasoner", t, [])
    assert "Current b" in encode(r, "delta")[1]["content"]
    d = decode("<answer>[0, 0, 0, 0, 0, 0]</answer>", r, "delta")
    assert d.allocation == pytest.approx([1.0] * 6)


def test_graph_context_lists_the_same_encodings():
    """graph.context keeps its own copy (it must not import policies); they must agree."""
    from graph.context import ENCODINGS as GRAPH_ENCODINGS

    assert GRAPH_ENCODINGS == ENCODINGS


def test_answer_token_cap_fits_the_widest_answers():
    """Up to T = 24, every answer the enforced format allows (widest numbers: ``99.99``,
    ``-99.99``) and every ``format_target`` text fit under the cap with the embedded tokenizer."""
    import regex

    from policies.constrained import answer_pattern
    from policies.models import embedded_tokenizer
    from policies.prompts import MIN_ANSWER_TOKENS, answer_token_cap

    tok = embedded_tokenizer()

    def n_tokens(s: str) -> int:
        return len(tok(s, add_special_tokens=False)["input_ids"]) + 1  # + EOS

    rng = np.random.default_rng(0)
    for enc in ENCODINGS:
        signed = enc in DELTA_ENCODINGS
        widths = ["99.99", "10.00", "0.00"] + (["-99.99", "-10.00", "-0.01"] if signed else [])
        for T in range(2, 25):
            cap = answer_token_cap(T, enc)
            texts = ["<answer>[" + ",".join([w] * T) + "]</answer>" for w in widths]
            texts.append("<answer>[" + ",".join(rng.choice(widths, T)) + "]</answer>")
            req = make_request("optimizer", make_task(T=T, seed=T))
            texts.append(format_target(req, rng.uniform(0, 2 * req.task.unit, T).tolist(), enc))
            for text in texts:
                if "<reason>" not in text:
                    assert regex.fullmatch(answer_pattern(T, signed), text), text
                assert n_tokens(text) <= cap, (enc, T, n_tokens(text), cap)
        assert answer_token_cap(24, enc) > 64 >= MIN_ANSWER_TOKENS  # 64 used to truncate T = 24


@pytest.mark.parametrize("bad", [0, -1, 2.5, "6", True, None])
def test_answer_token_cap_rejects_bad_periods(bad):
    from policies.prompts import answer_token_cap

    with pytest.raises(ValueError, match="periods"):
        answer_token_cap(bad, "delta")
    with pytest.raises(ValueError, match="encoding"):
        answer_token_cap(6, "binary")
