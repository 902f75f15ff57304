"""Benchmarks of the hint and the decoder: trust-region option parsing and jump count, the in-process hint trial, redecode, and carrying episodes to a new Reasoner."""

import json

import numpy as np
import pytest

from conftest import load_benchmark


def test_variants_parse_and_bad_ones_say_what_is_wrong():
    tr = load_benchmark("trust_region")
    assert tr.parse_variant("base=") == ("base", {})
    assert tr.parse_variant("both=grow:2,no_slope_trust:0.1") == ("both", {"grow": 2.0, "no_slope_trust": 0.1})
    assert tr.parse_variant("before=unfunded_cap:0") == ("before", {"unfunded_cap": False})
    for bad, why in [("grow:2", "expected name="), ("x=speed:2", "not param:value"), ("x=grow", "not param:value"),
                     ("x=unfunded_cap:flase", "'unfunded_cap:flase': expected 1/true/on or 0/false/off"),
                     ("x=grow:fast", "'grow:fast'")]:
        with pytest.raises(ValueError, match=why):
            tr.parse_variant(bad)


def test_a_jump_is_a_rise_of_more_than_two_points_after_round_one():
    tr = load_benchmark("trust_region")
    regret = np.array([[0.30, 0.30, 0.30], [0.10, 0.10, 0.02], [0.05, 0.125, 0.01], [0.04, 0.02, 0.03]])
    s = tr.cell_summary(regret)  # env 1 rises 2.5 points at round 3; env 2 only 2 points
    assert s["jump_share"] == pytest.approx(1 / 3)
    assert s["r1"] == pytest.approx(0.30) and s["r10"] == pytest.approx(0.03)


def test_hint_trial_runs_bench_with_the_options_and_restores_local_model(tmp_path):
    from policies import baselines

    original = baselines.local_model
    out = {}
    for name, opts in (("off", ["--option", "grow:1"]), ("default", [])):
        path = tmp_path / f"{name}.json"
        code = load_benchmark("hint_trial").main(opts + ["--", "--family", "media", "--periods", "16", "--envs", "8",
                                                         "--rounds", "4", "--seed", "7", "--policies", "local-model",
                                                         "--json", str(path)])
        assert code == 0
        out[name] = json.loads(path.read_text())
    assert baselines.local_model is original and baselines._FUNCS["local-model"] is original
    assert out["off"]["methods"]["local-model"] != out["default"]["methods"]["local-model"]


def test_redecode_finds_the_answers_the_current_decoder_rejects(tmp_path, capsys):
    from tools.envs import env_from_spec

    spec = {"family": "quadratic", "n": 2, "periods": 4, "budget": 4.0, "seed": 7, "noise": 0.0,
            "history": 3, "kw": {}, "index": 1}
    task = env_from_spec(spec, 1).task(0)
    restated = "<answer>[" + ",".join(f"{b / task.unit:.2f}" for b in task.history[-1].allocation) + "]</answer>"
    rounds = [{"round": 1, "source": "reasoner", "proposal": [1.0] * 4, "allocation": [1.0] * 4,
               "mroi": [0.5] * 4, "text": restated},
              {"round": 2, "source": "optimizer", "proposal": [1.0] * 4, "allocation": [1.0] * 4,
               "mroi": [0.5] * 4, "text": "<answer>[0.10,-0.10,0.00,0.00]</answer>"}]
    path = tmp_path / "episodes.jsonl"
    path.write_text(json.dumps({"id": "e0", "status": "ok", "env": spec, "rounds": rounds}) + "\n")
    rd = load_benchmark("redecode")
    n, changed = rd.changed_decisions(path, 3, {"reasoner": "delta-hint", "optimizer": "delta-hint"})
    assert n == 2 and [(c["round"], c["was"], c["now"]) for c in changed] == [(1, "used", "not_a_change")]
    assert rd.main([str(path), "--encoding", "delta-hint"]) == 0
    assert "1 decisions read differently" in capsys.readouterr().out


def test_redecode_reads_held_rounds_too(tmp_path):
    """A round whose answer was unusable (source ``fallback``, plan held) is read again as
    well: an answer the current decoder accepts shows as ``error -> used``."""
    from tools.envs import env_from_spec

    spec = {"family": "quadratic", "n": 2, "periods": 4, "budget": 4.0, "seed": 7, "noise": 0.0,
            "history": 3, "kw": {}, "index": 1}
    task = env_from_spec(spec, 1).task(0)
    held = {"round": 1, "source": "fallback", "proposal": None, "allocation": task.history[-1].allocation,
            "mroi": [0.5] * 4, "text": "<answer>[0.10,-0.10,0.00,0.00]</answer>",
            "error": "wrong_length: expected 4 numbers, got 3"}
    path = tmp_path / "episodes.jsonl"
    path.write_text(json.dumps({"id": "e0", "status": "ok", "env": spec, "rounds": [held]}) + "\n")
    n, changed = load_benchmark("redecode").changed_decisions(path, 3, {"reasoner": "delta-hint",
                                                                         "optimizer": "delta-hint"})
    assert n == 1 and [(c["role"], c["was"], c["now"]) for c in changed] == [("reasoner", "wrong_length", "used")]


def test_carry_keeps_only_episodes_whose_round_one_the_new_reasoner_repeats(tmp_path):
    """Carried: same round-1 text, source and rejected answers; changed or failed ones
    are left for the rerun, and run.json names the new Reasoner."""
    carry = load_benchmark("carry_episodes")

    def ep(eid, text, rejected=(), status="ok", rounds=3):
        r1 = {"round": 1, "text": text, "source": "reasoner" if not rejected else "fallback",
              "rejected_answers": [{"text": t} for t in rejected]}
        return {"id": eid, "status": status, "rounds": [r1] + [{"round": k} for k in range(2, rounds + 1)]}

    def write(d, eps, settings=None):
        d.mkdir(parents=True)
        (d / "episodes.jsonl").write_text("".join(json.dumps(e) + "\n" for e in eps))
        if settings:
            (d / "run.json").write_text(json.dumps(settings))

    old, new, out = tmp_path / "old", tmp_path / "new", tmp_path / "out"
    settings = {"context": {"reasoner_adapter": None, "reasoner_encoding": None, "max_rounds": 3},
                "episodes": {"count": 4, "sha256": "x"}, "source": {"method": "dara"}}
    write(old, [ep("a", "<answer>[1,-1]</answer>"), ep("b", "<answer>[2,-2]</answer>"),
                ep("c", "x", rejected=("x", "x")), ep("d", "<answer>[0,0]</answer>", status="error")], settings)
    round1 = {**settings, "context": {**settings["context"], "reasoner_adapter": "runs/r/adapter", "max_rounds": 1}}
    write(new, [ep("a", "<answer>[1,-1]</answer>", rounds=1), ep("b", "<answer>[1,-1]</answer>", rounds=1),
                ep("c", "x", rejected=("x", "y"), rounds=1), ep("d", "<answer>[0,0]</answer>", rounds=1)], round1)
    assert carry.carry_cell(old, new, out, "runs/r/adapter", None) == (1, 4)
    kept = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert [e["id"] for e in kept] == ["a"] and len(kept[0]["rounds"]) == 3  # the old, full episode
    s = json.loads((out / "run.json").read_text())
    assert s["context"]["reasoner_adapter"] == "runs/r/adapter" and s["context"]["max_rounds"] == 3
    assert s["episodes"] == settings["episodes"] and s["source"]["carried"]["episodes"] == 1
    (new / "run.json").write_text(json.dumps({**round1, "context": {**round1["context"], "window": 5}}))
    with pytest.raises(ValueError, match="more than the Reasoner: window None -> 5"):
        carry.carry_cell(old, new, tmp_path / "out2", "runs/r/adapter", None)
