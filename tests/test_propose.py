"""LLMPolicy, make_policy and `dara propose` (tiny-random, fast)."""

from __future__ import annotations

import json
import sys

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from policies import make_policy, shipped_adapter
from policies.llm import LLMPolicy
from policies.prompts import error_code, make_request
from tests.test_prompts import make_task


def test_policy_decodes_and_never_raises_on_bad_text():
    chat = FakeListChatModel(responses=["<answer>[1, 1, 1, 1, 1, 2]</answer>", "garbage"])
    pol = LLMPolicy("reasoner", chat)
    reqs = [make_request("reasoner", make_task(seed=s)) for s in range(2)]
    good, bad = pol.propose(reqs)
    assert good.error is None and good.allocation == pytest.approx([1, 1, 1, 1, 1, 2])
    assert bad.allocation is None and error_code(bad.error) == "missing_tags" and bad.text == "garbage"


def test_policy_records_backend_failure():
    class Broken(FakeListChatModel):
        def batch(self, *a, **k):
            raise ConnectionError("server down")

    d = LLMPolicy("optimizer", Broken(responses=["x"])).propose([make_request("optimizer", make_task())])
    assert d[0].allocation is None and d[0].error.startswith("backend: ConnectionError")


def test_optimizer_delta_through_policy():
    task = make_task()
    chat = FakeListChatModel(responses=["<answer>[0, 0, 0, 0, 0, 0]</answer>"])
    d = LLMPolicy("optimizer", chat).propose([make_request("optimizer", task)])[0]
    assert d.allocation == pytest.approx(task.history[-1].allocation)


@pytest.mark.parametrize("enc,signed", [("absolute", False), ("delta", True), ("delta-slope", True)])
def test_constrained_answer_format_is_signed_for_change_encodings(enc, signed):
    """A backend with format enforcement is asked for T numbers, signed when the answer is a change."""
    seen = []

    class Enforcing:
        def generate_texts(self, prompts, adapter=None, answer_format=None, **kw):
            seen.append(answer_format)
            return ["<answer>[0,0,0,0,0,0]</answer>"] * len(prompts)

    task = make_task()
    d = LLMPolicy("optimizer", Enforcing(), encoding=enc).propose([make_request("optimizer", task)])[0]
    assert seen == [(6, signed)]
    assert "fall=" in LLMPolicy("optimizer", Enforcing(), encoding=enc).messages(
        make_request("optimizer", task))[1]["content"] or enc != "delta-slope"
    if signed:
        assert d.allocation == pytest.approx(task.history[-1].allocation)


@pytest.mark.parametrize("enc", ["absolute", "delta", "delta-slope"])
@pytest.mark.parametrize("constrained", [True, False])
def test_token_cap_follows_t_per_call(enc, constrained):
    """Each backend call may use ``answer_token_cap(T)`` tokens; an explicit cap wins."""
    from policies.prompts import answer_token_cap

    seen = []

    class Backend:
        def generate_texts(self, prompts, adapter=None, answer_format=None, max_new_tokens=None, **kw):
            seen.append((len(prompts), max_new_tokens))
            return [""] * len(prompts)

    reqs = [make_request("optimizer", make_task(T=T)) for T in (6, 24, 24)]
    LLMPolicy("optimizer", Backend(), encoding=enc, constrained=constrained).propose(reqs)
    cap6, cap24 = answer_token_cap(6, enc), answer_token_cap(24, enc)
    assert seen == ([(1, cap6), (2, cap24)] if constrained else [(3, cap24)])
    seen.clear()
    LLMPolicy("optimizer", Backend(), encoding=enc, constrained=constrained, max_new_tokens=5).propose(reqs)
    assert {cap for _, cap in seen} == {5}


def test_make_policy_baseline_and_lazy_torch():
    import subprocess

    code = ("import sys, policies; p = policies.make_policy('uniform', 'reasoner'); "
            "print(p.name, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["uniform", "False"]


def test_shipped_adapters_exist():
    from policies import ADAPTERS_DIR

    for role in ("reasoner", "optimizer"):
        assert shipped_adapter(role) == ADAPTERS_DIR / role
        assert (ADAPTERS_DIR / role / "adapter_config.json").is_file()
        assert (ADAPTERS_DIR / role / "adapter_model.safetensors").is_file()
    with pytest.raises(ValueError, match="role"):
        shipped_adapter("critic")


def test_make_policy_llm_local_tiny():
    pol = make_policy("llm", "optimizer", base="tiny-random", adapter="none", max_new_tokens=4)
    d = pol.propose([make_request("optimizer", make_task())])[0]
    assert d.allocation is None and d.error  # random model: a typed failure, no exception


def test_propose_cli(tmp_path):
    from policies.propose import main

    task = tmp_path / "task.json"
    task.write_text(make_task().to_json())
    out = tmp_path / "out.json"
    rc = main(["--role", "optimizer", "--base", "tiny-random", "--adapter", "none", "--task", str(task),
               "--max-new-tokens", "4", "--json", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert set(res) == {"allocation", "text", "error"} and isinstance(res["text"], str)
    assert res["allocation"] is None and res["error"]


def test_propose_cli_bad_task(tmp_path, capsys):
    from policies.propose import main

    assert main(["--role", "reasoner", "--task", str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err


def test_propose_cli_with_adapter_changes_text(tmp_path):
    from policies.propose import main
    from tests.test_local_backend import _make_adapter

    ad = _make_adapter(tmp_path / "opt", seed=3)
    task = tmp_path / "task.json"
    task.write_text(make_task().to_json())
    texts = []
    for adapter in ("none", str(ad)):
        out = tmp_path / f"out-{len(texts)}.json"
        assert main(["--role", "optimizer", "--base", "tiny-random", "--adapter", adapter,
                     "--task", str(task), "--max-new-tokens", "6", "--json", str(out)]) == 0
        texts.append(json.loads(out.read_text())["text"])
    assert texts[0] != texts[1]
