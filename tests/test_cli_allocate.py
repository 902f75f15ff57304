"""``dara allocate``: plans in the analyst's units, no held allocation passed off as a
plan, ``--fallback``, flags above the table, live sessions that ask only what they use."""

from __future__ import annotations

import io
import json

import pytest

from graph.commands import allocate
from graph.policy_registry import register_policy, unregister_policy
from policies.base import Decision

TASK = {"budget": 250000, "periods": 4, "labels": ["search", "social", "tv", "display"],
        "history": [{"allocation": [60000, 60000, 72000, 58000], "mroi": [2.6, 1.5, 0.8, 1.25]},
                    {"allocation": [70000, 55000, 63000, 62000], "mroi": [2.4, 1.6, 0.85, 1.18]},
                    {"allocation": [65000, 62500, 62500, 60000], "mroi": [2.5, 1.45, 0.86, 1.22]}]}
SCHEMA = {"current", "plan", "decimals", "changes", "expected_uplift", "flags", "reason", "warnings", "raw_text", "source",
          "rejected_answers", "provenance"}


class Fixed:
    """A policy that always answers ``allocation`` (None = an unusable answer)."""

    def __init__(self, allocation, text="<answer>[oops</answer>"):
        self.allocation, self.text = allocation, text
        self.name = "fixed"

    def propose(self, requests):
        err = None if self.allocation is not None else "no <answer>[...] list in the output"
        return [Decision(allocation=self.allocation, text=self.text, error=err) for _ in requests]


@pytest.fixture
def policy():
    names = []

    def add(name, pol):
        register_policy(name, pol)
        names.append(name)
        return name

    yield add
    for n in names:
        unregister_policy(n)


def _run(tmp_path, *argv, stdin=""):
    p = tmp_path / "task.json"
    p.write_text(json.dumps(TASK))
    out = io.StringIO()
    code = allocate.main(["--task", str(p), *argv], stdin=io.StringIO(stdin), stdout=out)
    return code, out.getvalue()


def test_plan_table_in_money_with_exact_sum_and_json_schema(tmp_path):
    code, text = _run(tmp_path, "--reasoner", "local-model", "--json", str(tmp_path / "o.json"))
    assert code == 0
    assert "slot" in text and "recommended" in text and "MROI predicted" in text
    assert "250,000.00" in text and "e+" not in text
    assert "expected change in return: +" in text and "95% interval" in text
    assert "reason: moved" in text and "to search" in text
    data = json.loads((tmp_path / "o.json").read_text())
    assert set(data) == SCHEMA
    assert round(sum(data["plan"]) * 100) == 25_000_000  # to the cent
    assert data["current"] == [65000.0, 62500.0, 62500.0, 60000.0]
    assert [c["label"] for c in data["changes"]] == TASK["labels"]
    assert set(data["changes"][0]) == {"label", "current", "recommended", "change", "share", "mroi_last",
                                       "mroi_predicted"}
    assert data["source"] == "local-model" and data["plan"][0] > 65000
    assert set(data["expected_uplift"]) == {"value", "low", "high"}
    assert data["provenance"]["version"] and data["provenance"]["seed"] == 0


def test_unusable_answer_is_no_plan_exit_3(tmp_path, policy):
    name = policy("garbled", Fixed(None))
    code, text = _run(tmp_path, "--reasoner", name, "--json", str(tmp_path / "o.json"))
    assert code == allocate.EXIT_NO_PLAN == 3
    assert "no new plan was produced: no <answer>" in text and "--fallback" in text
    assert "recommended" not in text  # no table: the held allocation is not a plan
    data = json.loads((tmp_path / "o.json").read_text())
    assert set(data) == SCHEMA and data["plan"] is None and data["source"] == "none"
    assert data["raw_text"] == "<answer>[oops</answer>"


def test_an_allocation_written_as_a_change_is_no_plan_not_the_current_one(tmp_path, policy):
    """A signed answer that restates the current allocation (the Reasoner's Robyn failure)
    used to be rescaled into the current plan and printed as a recommendation."""
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    from policies.llm import LLMPolicy

    unit = TASK["budget"] / TASK["periods"]
    restated = "<answer>[" + ",".join(f"{a / unit:.2f}" for a in TASK["history"][-1]["allocation"]) + "]</answer>"
    name = policy("restating", LLMPolicy("reasoner", FakeListChatModel(responses=[restated]), encoding="delta-hint"))
    code, text = _run(tmp_path, "--reasoner", name, "--json", str(tmp_path / "o.json"))
    assert code == allocate.EXIT_NO_PLAN
    assert "no new plan was produced: not_a_change" in text and "recommended" not in text
    data = json.loads((tmp_path / "o.json").read_text())
    assert data["plan"] is None and data["raw_text"] == restated


def test_a_resampled_answer_is_the_plan_and_says_so(tmp_path, policy):
    """The greedy answer restates the allocation; the first sample is a change: that is the
    plan, and the console says the model was asked again (the rejected answer with -v)."""
    from policies.llm import LLMPolicy

    unit = TASK["budget"] / TASK["periods"]
    restated = "<answer>[" + ",".join(f"{a / unit:.2f}" for a in TASK["history"][-1]["allocation"]) + "]</answer>"

    class SamplesAChange:
        def generate_texts(self, prompts, seed=None, **kw):
            return ["<answer>[0.10,-0.10,0.00,0.00]</answer>" if seed else restated] * len(prompts)

    name = policy("resampled", LLMPolicy("reasoner", SamplesAChange(), encoding="delta-hint", resample=8))
    code, text = _run(tmp_path, "--reasoner", name, "--json", str(tmp_path / "o.json"))
    assert code == 0 and "plan from: resampled: sample 1, asked again after 1 rejected answer" in text
    data = json.loads((tmp_path / "o.json").read_text())
    assert set(data) == SCHEMA and [a["seed"] for a in data["rejected_answers"]] == [None]
    code, text = _run(tmp_path, "--reasoner", name, "--verbose")
    assert code == 0
    assert "asked 1 more time(s) after a rejected answer; the answer of sample 1 is the plan" in text
    assert "rejected answer (seed None)" in text and "not_a_change" in text


def test_fallback_plans_numerically_and_says_so(tmp_path, policy):
    # --fallback is Context.fallback: the graph plans the round with the numeric policy
    name = policy("garbled", Fixed(None))
    code, text = _run(tmp_path, "--reasoner", name, "--fallback", "local-model", "--json", str(tmp_path / "o.json"))
    assert code == 0
    assert "plan from: numeric fallback local-model" in text and "no <answer>" in text
    data = json.loads((tmp_path / "o.json").read_text())
    assert data["source"] == "fallback:local-model" and data["raw_text"] == "<answer>[oops</answer>"
    assert round(sum(data["plan"]), 2) == 250000 and data["plan"] != data["current"]


def test_fallback_marks_every_live_round_it_planned(tmp_path, policy):
    name = policy("garbled", Fixed(None))
    code, text = _run(tmp_path, "--live", "--rounds", "2", "--reasoner", name, "--optimizer", name,
                      "--fallback", "gradient", "--json", str(tmp_path / "o.json"), stdin="2.4 1.5 0.85 1.2\n")
    assert code == 0
    assert text.count("plan from: numeric fallback gradient") == 3  # rounds 1, 2 and the final plan
    assert json.loads((tmp_path / "o.json").read_text())["source"] == "fallback:gradient"


def test_flagged_plan_still_exits_0_with_flags_above_the_table(tmp_path, policy):
    # budget out of search (highest MROI) into tv (lowest): against the evidence
    name = policy("harmful", Fixed([25000, 62500, 102500, 60000], text="[harmful]"))
    code, text = _run(tmp_path, "--reasoner", name, "--json", str(tmp_path / "o.json"), "--plot",
                      str(tmp_path / "p.png"))
    assert code == 0
    assert text.index("check (against_evidence)") < text.index("recommended")
    data = json.loads((tmp_path / "o.json").read_text())
    assert "against_evidence" in {f["kind"] for f in data["flags"]}
    assert (tmp_path / "p.png").stat().st_size > 1000
    assert "[harmful]" not in text  # raw text only with --verbose (and in the JSON)
    assert data["raw_text"] == "[harmful]"
    _, verbose = _run(tmp_path, "--reasoner", name, "--verbose")
    assert "model answer: [harmful]" in verbose


def test_live_does_not_ask_for_the_last_observation(tmp_path):
    stdin = "2.4 1.5 0.85 1.2\n0.6, 0.5, abc\n2.3 1.5 0.9 1.2\n"
    code, text = _run(tmp_path, "--live", "--rounds", "3", "--reasoner", "local-model", "--optimizer",
                      "gradient", "--json", str(tmp_path / "o.json"), stdin=stdin)
    assert code == 0
    assert "observed MROI after applying round 2" in text and "'abc' is not a number" in text
    assert "after applying round 3" not in text  # nobody would use it
    assert text.count("apply: search") == 3
    data = json.loads((tmp_path / "o.json").read_text())
    assert round(sum(data["plan"]), 2) == 250000


def test_return_records_are_estimated_and_noted(tmp_path, policy):
    name = policy("steady", Fixed([70000, 60000, 60000, 60000], text=""))
    task = {**TASK, "history": [{"allocation": r["allocation"],
                                 "return": [a * m * 1.3 for a, m in zip(r["allocation"], r["mroi"])]}
                                for r in TASK["history"]]}
    p = tmp_path / "task.json"
    p.write_text(json.dumps(task))
    out = io.StringIO()
    assert allocate.main(["--task", str(p), "--reasoner", name], stdout=out) == 0
    assert "note: MROI estimated from returns" in out.getvalue()


def test_an_approved_edit_is_marked_and_reports_what_the_budget_tool_changed(tmp_path):
    code, text = _run(tmp_path, "--reasoner", "local-model", "--approve", "--json", str(tmp_path / "o.json"),
                      stdin="70000 60000 60000 1000\n")
    assert code == 0
    assert "plan from: your edit, made feasible by the budget tool: sum was 191,000" in text
    assert json.loads((tmp_path / "o.json").read_text())["source"] == "edited"


RETURN_TASK = {**TASK, "history": [{"allocation": r["allocation"],
                                    "return": [a * m * 1.3 for a, m in zip(r["allocation"], r["mroi"])]}
                                   for r in TASK["history"]]}


def _run_task(tmp_path, task, *argv, stdin=""):
    p = tmp_path / "task.json"
    p.write_text(json.dumps(task))
    out = io.StringIO()
    return allocate.main(["--task", str(p), *argv], stdin=io.StringIO(stdin), stdout=out), out.getvalue()


def test_numeric_policy_plans_a_return_task_and_says_mroi_was_estimated(tmp_path):
    from tools.returns import mroi_task
    from tools.task import Task

    code, text = _run_task(tmp_path, RETURN_TASK, "--reasoner", "local-model", "--json", str(tmp_path / "o.json"))
    assert code == 0
    _, note = mroi_task(Task.model_validate(RETURN_TASK))  # what the graph keeps as state["mroi_estimate"]
    assert f"note: {note}" in text and "MROI estimated from returns (3 records per slot)" in text
    data = json.loads((tmp_path / "o.json").read_text())
    assert data["source"] == "local-model" and round(sum(data["plan"]), 2) == 250000
    assert data["plan"] != data["current"]


def test_live_return_task_asks_for_returns_and_plans_from_them(tmp_path):
    # the graph offers {"return": [...]} on resume: a task that records returns is asked for returns;
    # a negative return is refused by the graph and asked again
    stdin = "-1 60000 50000 70000\n150000 95000 70000 90000\n160000 90000 72000 88000\n"
    code, text = _run_task(tmp_path, RETURN_TASK, "--live", "--rounds", "3", "--reasoner", "local-model",
                           "--optimizer", "gradient", "--json", str(tmp_path / "o.json"), stdin=stdin)
    assert code == 0
    assert "observed return after applying round 1" in text and "observed MROI after" not in text
    assert "a return (revenue) is a number >= 0" in text
    assert text.count("observed return: search 150,000.00") == 1
    assert "MROI estimated from the returns:" in text
    assert "after applying round 3" not in text
    # the final plan's figures use the history and both observed rounds
    assert "MROI estimated from returns (5 records per slot)" in text
    assert round(sum(json.loads((tmp_path / "o.json").read_text())["plan"]), 2) == 250000


def test_live_mroi_task_is_asked_for_mroi(tmp_path):
    code, text = _run(tmp_path, "--live", "--rounds", "2", "--reasoner", "local-model", "--optimizer", "gradient",
                      stdin="2.4 1.5 0.85 1.2\n")
    assert code == 0 and "observed MROI after applying round 1" in text and "observed return" not in text
