"""``dara run``: outputs, resume after SIGKILL (every episode exactly once), torn lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from graph.commands.episode_log import repair_and_read
from graph.commands.run import main

REPO = Path(__file__).resolve().parents[1]
ARGS = ["--family", "quadratic", "--rounds", "3", "--seed", "5", "--reasoner", "heuristic",
        "--optimizer", "local-model", "--quiet"]


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_run_writes_episodes_summary_plot(tmp_path):
    out = tmp_path / "run"
    assert main(ARGS + ["--episodes", "6", "--out", str(out), "--concurrency", "3"]) == 0
    eps = _lines(out / "episodes.jsonl")
    assert sorted(e["id"] for e in eps) == [f"quadratic-s5-{i:05d}" for i in range(6)]
    e = eps[0]
    assert len(e["rounds"]) == 3 and len(e["regret"]) == 3
    for r in e["rounds"]:
        assert {"proposal", "allocation", "mroi", "source", "text", "error"} <= set(r)
    assert (out / "summary.csv").read_text().startswith("round,episodes,regret_mean")
    assert (out / "rounds.png").stat().st_size > 1000
    # a second run into the same dir without --resume refuses
    assert main(ARGS + ["--episodes", "6", "--out", str(out)]) == 2
    # --resume with different settings refuses, naming the field
    assert main(ARGS[:-1] + ["--episodes", "7", "--out", str(out), "--resume", "--quiet"]) == 2
    # --resume of a finished run runs nothing and duplicates nothing
    assert main(ARGS + ["--episodes", "6", "--out", str(out), "--resume"]) == 0
    assert len(_lines(out / "episodes.jsonl")) == 6


def test_resume_names_what_changed(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(ARGS + ["--episodes", "2", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(ARGS + ["--episodes", "2", "--out", str(out), "--resume", "--window", "2"]) == 2
    assert "context.window was 3, now 2" in capsys.readouterr().err
    assert main(ARGS + ["--episodes", "2", "--out", str(out), "--resume", "--noise", "0.1"]) == 2
    assert "noise 0.0 -> 0.1" in capsys.readouterr().err
    # a batch started before context.resample existed ran without it: resuming needs --resample 0
    settings = json.loads((out / "run.json").read_text())
    del settings["context"]["resample"]
    (out / "run.json").write_text(json.dumps(settings))
    assert main(ARGS + ["--episodes", "2", "--out", str(out), "--resume"]) == 2
    assert "context.resample was 0 (the field did not exist yet), now 8" in capsys.readouterr().err
    assert main(ARGS + ["--episodes", "2", "--out", str(out), "--resume", "--resample", "0"]) == 0
    (out / "run.json").write_text(json.dumps({"family": "quadratic", "episodes": 2}))
    assert main(ARGS + ["--episodes", "2", "--out", str(out), "--resume"]) == 2
    assert "written by an older dara run" in capsys.readouterr().err


def test_a_resumed_run_says_which_episodes_it_reuses(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(ARGS + ["--episodes", "2", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(ARGS[:-1] + ["--episodes", "2", "--out", str(out), "--resume"]) == 0
    assert "2 of 2 episodes are already in" in capsys.readouterr().err


def test_torn_last_line_is_repaired(tmp_path):
    p = tmp_path / "episodes.jsonl"
    p.write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c", "rou')
    assert [r["id"] for r in repair_and_read(p)] == ["a", "b"]
    assert p.read_text() == '{"id": "a"}\n{"id": "b"}\n'


def test_tasks_jsonl(tmp_path):
    from tools.envs import make_envs

    env = make_envs("exponential", 3, seed=2)
    lines = [json.dumps({"id": f"camp-{i}", "env": {**env.spec, "index": i}}) for i in range(3)]
    (tmp_path / "t.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "o"
    assert main(["--tasks", str(tmp_path / "t.jsonl"), "--rounds", "2", "--reasoner", "uniform",
                 "--optimizer", "gradient", "--out", str(out), "--quiet"]) == 0
    assert sorted(e["id"] for e in _lines(out / "episodes.jsonl")) == ["camp-0", "camp-1", "camp-2"]
    (tmp_path / "bad.jsonl").write_text(json.dumps({"task": env.task(0).model_dump()}) + "\n")
    assert main(["--tasks", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "b"), "--quiet"]) == 2


@pytest.mark.slow
def test_sigkill_mid_batch_then_resume_runs_every_episode_once(tmp_path):
    n = 60
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "graph.commands.cli", "run", *ARGS, "--episodes", str(n), "--out", str(out),
           "--concurrency", "4", "--keep-checkpoints"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ep = out / "episodes.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if ep.exists() and ep.read_bytes().count(b"\n") >= 5:
            break
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.fail("dara run finished before it could be killed; raise n")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = ep.read_bytes().count(b"\n")
    assert 5 <= before < n
    # tear the last line as a kill mid-write would
    with open(ep, "ab") as f:
        f.write(b'{"id": "quadratic-s5-99999", "rounds": [')
    r = subprocess.run(cmd + ["--resume"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    eps = _lines(ep)
    ids = [e["id"] for e in eps]
    assert len(ids) == n and len(set(ids)) == n
    assert set(ids) == {f"quadratic-s5-{i:05d}" for i in range(n)}
    # identical to an uninterrupted run (nothing lost, nothing changed by the resume)
    ref = tmp_path / "ref"
    assert main(ARGS + ["--episodes", str(n), "--out", str(ref), "--concurrency", "4"]) == 0
    by_id = {e["id"]: e for e in _lines(ref / "episodes.jsonl")}
    for e in eps:
        assert e["status"] == "ok"
        assert [x["allocation"] for x in e["rounds"]] == [x["allocation"] for x in by_id[e["id"]]["rounds"]]
        assert e["regret"] == by_id[e["id"]]["regret"]


class _Killed(BaseException):
    """Stands in for SIGKILL: not an Exception, so nothing in the graph catches it."""


def test_resume_when_the_last_step_saved_its_writes_but_not_its_checkpoint():
    """The window SIGKILL hit in CI: ``query_env`` finished and its writes were saved, the
    next checkpoint was not. ``get_state().next`` is then empty although the episode is not
    done; resuming must continue it, not start it again (which appended rounds twice)."""
    from langgraph.checkpoint.memory import InMemorySaver

    from graph.context import Context
    from graph.graph import build_graph
    from graph.commands.episodes import run_episode_thread

    class DyingSaver(InMemorySaver):
        armed = True

        def put(self, config, checkpoint, metadata, new_versions):
            # the first checkpoint after round 2's query_env: die before saving it
            if self.armed and len(checkpoint["channel_values"].get("rounds") or []) == 2:
                self.armed = False
                raise _Killed
            return super().put(config, checkpoint, metadata, new_versions)

    ctx = Context(reasoner="heuristic", optimizer="local-model", max_rounds=3, seed=5)
    inp = {"env": {"family": "quadratic", "seed": 5, "n": 8, "index": 3}}
    saver = DyingSaver()
    graph = build_graph(checkpointer=saver)
    with pytest.raises(_Killed):
        graph.invoke(inp, {"configurable": {"thread_id": "e"}}, context=ctx, durability="sync")
    snap = graph.get_state({"configurable": {"thread_id": "e"}})
    assert snap.next == () and not snap.values.get("done")  # the confusing state
    resumed = run_episode_thread(graph, "e", inp, ctx)
    ref = run_episode_thread(build_graph(checkpointer=InMemorySaver()), "e", inp, ctx)
    assert [r["round"] for r in resumed["rounds"]] == [1, 2, 3]
    assert [r["source"] for r in resumed["rounds"]] == ["reasoner", "optimizer", "optimizer"]
    assert [r["allocation"] for r in resumed["rounds"]] == [r["allocation"] for r in ref["rounds"]]


def test_failure_before_the_first_episode_leaves_nothing(tmp_path, monkeypatch, capsys):
    """A batch that cannot start (here: the graph cannot be built) removes the --out
    directory it created instead of leaving one holding only run.json."""
    import graph.graph

    def broken(**_kw):
        raise ValueError("graph cannot be built")

    monkeypatch.setattr(graph.graph, "build_graph", broken)
    out = tmp_path / "new" / "run"
    assert main(ARGS + ["--episodes", "2", "--out", str(out)]) == 2
    assert "graph cannot be built" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    assert main(ARGS + ["--episodes", "2", "--out", str(kept)]) == 2
    assert sorted(p.name for p in kept.iterdir()) == ["notes.txt"]


def test_fallback_rate_is_printed_when_above_zero(tmp_path, register_policy, capsys):
    from policies.base import Decision

    class Garbled:
        name = "garbled"

        def propose(self, requests):
            return [Decision(allocation=None, text="??", error="no answer") for _ in requests]

    register_policy("garbled", Garbled())
    assert main(ARGS[:-3] + ["--optimizer", "garbled", "--episodes", "2", "--out", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert "fallback rate: 66.7% (4 of 6 decisions" in err
    assert main(ARGS + ["--episodes", "2", "--out", str(tmp_path / "ok")]) == 0
    assert "fallback rate" not in capsys.readouterr().err


@pytest.mark.parametrize("family", ["quadratic", "exponential", "hill", "media"])
def test_dara_run_sizes_every_synthetic_family(family):
    """--periods/--budget reach every synthetic family (media was once left at T = 6)."""
    from graph.commands.episode_sources import family_episodes

    env = family_episodes(family, 1, periods=9, budget=90.0)[0][1]["env"]
    assert (env["periods"], env["budget"]) == (9, 90.0)


def test_a_resume_refuses_other_adapter_weights_behind_the_same_context(tmp_path):
    """An empty context.reasoner_adapter means "the shipped one": when that file is
    replaced, a resumed batch would mix two Reasoners under one context. run.json keeps
    each model role's weights hash; files written before it have none and still resume."""
    import pytest

    from graph.commands.episodes import batch_settings, check_resumable
    from graph.context import Context

    a = tmp_path / "adapter"
    a.mkdir()
    (a / "adapter_model.safetensors").write_bytes(b"weights 1")
    ctx = Context(reasoner="llm", reasoner_adapter=str(a))
    eps = [("e0", {"task": {}})]
    old = batch_settings(ctx, eps)
    assert old["adapters"]["reasoner"]
    assert batch_settings(Context(reasoner="heuristic", optimizer="gradient"), eps)["adapters"] == {}
    (a / "adapter_model.safetensors").write_bytes(b"weights 2")
    with pytest.raises(ValueError, match="adapter weights were"):
        check_resumable(old, batch_settings(ctx, eps))
    check_resumable({k: v for k, v in old.items() if k != "adapters"}, batch_settings(ctx, eps))
