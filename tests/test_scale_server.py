"""``dara run --server``: batch episodes as runs on a LangGraph server.

Fast tests (no server; a few seconds in all):
the thread-id derivation, the resume decision per thread, the ``base_url`` context
field, and the whole ``--server`` executor through ``run_episodes`` against an
in-process fake of the SDK client that runs the real graph (finished threads read back,
pending runs joined, stopped ones continued, failed ones recorded, nothing resubmitted;
a lost server stops the batch with its files kept).

The slow test starts a real ``langgraph dev`` (2 jobs) and drives the real CLI as a
subprocess: 20 numeric episodes, SIGKILLed mid-batch and resumed, then 3 tiny-random LLM
episodes (local backend, constrained decoding); every episode appears exactly once and
its allocations equal a local ``dara run`` of the same episodes. About 80-100 s on 2 cores
(server start ~20 s, two tiny-model loads ~10 s each, the local LLM reference ~20 s).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from graph.commands import run as run_cmd
from graph.commands.context_flags import context_from_args
from graph.commands.episode_sources import family_episodes
from graph.commands.episodes import ExecutorLost, batch_settings, run_episodes
from graph.commands.server_episodes import GRAPH_ID, batch_digest, next_step, thread_id
from graph.context import Context
from tests.conftest import REPO, langgraph_dev, require

CTX = Context(reasoner="heuristic", optimizer="local-model", max_rounds=3, seed=2)


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _same(a: dict, b: dict) -> bool:
    """Two episode records agree on everything but the time they took."""
    return {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}


# ---------------------------------------------------------------------------------------
# thread ids and decisions
# ---------------------------------------------------------------------------------------
def test_thread_ids_follow_the_batch_not_the_output_directory():
    eps = family_episodes("quadratic", 3, seed=2)
    d = batch_digest(batch_settings(CTX, eps, {"family": "quadratic"}))
    assert d == batch_digest(batch_settings(CTX, eps, {"tasks": "elsewhere.jsonl"}))  # source: a record only
    tid = thread_id(d, eps[0][0])
    assert uuid.UUID(tid).version == 5 and tid == thread_id(d, eps[0][0])
    assert len({thread_id(d, eid) for eid, _ in eps}) == 3
    # another context or other episodes: other threads, never a collision
    assert batch_digest(batch_settings(Context(**{**asdict(CTX), "seed": 3}), eps)) != d
    assert batch_digest(batch_settings(CTX, family_episodes("quadratic", 3, seed=2, noise=0.1))) != d
    assert batch_digest(batch_settings(CTX, eps[:2])) != d


def test_graph_id_is_the_one_langgraph_json_serves():
    assert GRAPH_ID in json.loads((REPO / "langgraph.json").read_text())["graphs"]


DONE = {"values": {"done": True, "rounds": [1]}, "next": [], "checkpoint": {"checkpoint_id": "c"}, "metadata": {}}
MID = {"values": {"done": False, "rounds": [1]}, "next": ["optimize"], "checkpoint": {"checkpoint_id": "c"},
       "metadata": {"step": 4}}
EMPTY = {"values": {}, "next": [], "checkpoint": None, "metadata": None}


@pytest.mark.parametrize("state, statuses, step", [
    (None, [], "start"),                              # no thread yet
    (EMPTY, [], "start"),                             # created, never run
    (DONE, ["success"], "read"),                      # finished: read back
    (EMPTY, ["pending"], "join"),                     # queued when the client died
    (MID, ["running"], "join"),                       # running when the client died
    (MID, ["success"], "continue"),                   # stopped mid-episode (e.g. cancelled)
    (MID, ["timeout"], "continue"),
    (EMPTY, ["error"], "failed"),                     # the graph raised: recorded as failed
    (MID, ["pending", "success"], "join"),
])
def test_next_step(state, statuses, step):
    runs = [{"run_id": f"r{i}", "status": s} for i, s in enumerate(statuses)]
    assert next_step(state, runs)[0] == step


def test_join_waits_for_the_oldest_active_run():
    runs = [{"run_id": "new", "status": "pending"}, {"run_id": "old", "status": "running"}]
    assert next_step(MID, runs) == ("join", runs[1])


# ---------------------------------------------------------------------------------------
# the base_url context field (the model side of a fleet)
# ---------------------------------------------------------------------------------------
def test_base_url_is_a_context_field_for_openai_only():
    ctx = Context(backend="openai", base_url="http://a:8000/v1, http://b:8000/v1")
    assert ctx.policy_key("reasoner") != Context(backend="openai").policy_key("reasoner")
    assert Context(backend="openai", base_url="").base_url is None
    with pytest.raises(ValueError, match="context.base_url = 'http://a/v1': only backend openai"):
        Context(base_url="http://a/v1")
    with pytest.raises(ValueError, match="'gpu2:8000' is not an http"):
        Context(backend="openai", base_url="http://a/v1,gpu2:8000")
    args = run_cmd.build_parser().parse_args(["--out", "x", "--backend", "openai", "--base-url", "http://a/v1"])
    assert context_from_args(args, run_cmd.CONTEXT_FIELDS).base_url == "http://a/v1"


# ---------------------------------------------------------------------------------------
# the --server executor against an in-process fake of the SDK client
# ---------------------------------------------------------------------------------------
def _status_error(cls_name: str, code: int):
    from langgraph_sdk import errors

    response = httpx.Response(code, request=httpx.Request("GET", "http://fake"))
    return getattr(errors, cls_name)(f"{code}", response=response, body=None)


class FakeServer:
    """The part of ``langgraph_sdk``'s sync client that the executor uses, backed by the
    real graph on an in-memory checkpointer. A run stays pending until someone joins it,
    so a test can leave runs "in flight" as a killed client would."""

    def __init__(self):
        from langgraph.checkpoint.memory import InMemorySaver

        from graph.graph import build_graph

        self.graph = build_graph(checkpointer=InMemorySaver())
        self.known: dict[str, dict] = {}
        self.fail_with: Exception | None = None
        self.raced: set[str] = set()  # threads another client submits a run to just before us
        self.threads = SimpleNamespace(get_state=self.get_state, create=self.create_thread, get=self.get_thread,
                                       delete=self.known.pop)
        self.runs = SimpleNamespace(list=self.list_runs, create=self.create_run, join=self.join, get=self.get_run)
        self.closed = False

    def close(self):
        self.closed = True

    def _thread(self, tid):
        if tid not in self.known:
            raise _status_error("NotFoundError", 404)
        return self.known[tid]

    def get_state(self, tid):
        self._thread(tid)
        snap = self.graph.get_state({"configurable": {"thread_id": tid}})
        has = snap.metadata is not None
        return {"values": snap.values or {}, "next": list(snap.next), "metadata": snap.metadata,
                "checkpoint": snap.config["configurable"] if has else None}

    def create_thread(self, *, thread_id, if_exists=None, graph_id=None, metadata=None):
        if thread_id in self.known and if_exists != "do_nothing":
            raise _status_error("ConflictError", 409)
        self.known.setdefault(thread_id, {"runs": [], "error": None, "metadata": metadata})

    def get_thread(self, tid):
        return {"thread_id": tid, "error": self._thread(tid)["error"]}

    def list_runs(self, tid, limit=10):
        return [dict(r) for r in self._thread(tid)["runs"][:limit]]

    def get_run(self, tid, run_id):
        return next(dict(r) for r in self._thread(tid)["runs"] if r["run_id"] == run_id)

    def create_run(self, tid, graph_id, *, input=None, context=None, if_not_exists=None,
                   multitask_strategy=None, interrupt_before=None):
        if self.fail_with is not None:
            raise self.fail_with
        assert graph_id == GRAPH_ID
        if tid not in self.known:
            if if_not_exists != "create":
                raise _status_error("NotFoundError", 404)
            self.create_thread(thread_id=tid)
        if tid in self.raced:
            self.raced.discard(tid)
            self.create_run(tid, graph_id, input=input, context=context)
        runs = self.known[tid]["runs"]
        if multitask_strategy == "reject" and any(r["status"] in ("pending", "running") for r in runs):
            raise _status_error("ConflictError", 409)
        run = {"run_id": f"{tid[:8]}-{len(runs)}", "status": "pending", "input": input, "context": context,
               "interrupt_before": interrupt_before}
        runs.insert(0, run)  # newest first, as the server lists them
        return dict(run)

    def join(self, tid, run_id):
        run = next(r for r in self._thread(tid)["runs"] if r["run_id"] == run_id)
        if run["status"] == "pending":
            try:
                self.graph.invoke(run["input"], {"configurable": {"thread_id": tid}}, context=run["context"],
                                  interrupt_before=run["interrupt_before"])
                run["status"] = "success"
            except Exception as e:  # noqa: BLE001 - the server records it on the thread
                run["status"] = "error"
                self.known[tid]["error"] = {"error": type(e).__name__, "message": str(e)}
        return self.get_state(tid)["values"]


@pytest.fixture
def fake_server(monkeypatch):
    import langgraph_sdk

    require("langgraph_sdk")
    fake = FakeServer()
    monkeypatch.setattr(langgraph_sdk, "get_sync_client", lambda **kw: fake)
    return fake


def test_resume_on_a_server_reads_joins_continues_and_starts(tmp_path, fake_server):
    eps = family_episodes("quadratic", 6, seed=2)
    ref = run_episodes(CTX, eps, tmp_path / "local")
    local = {r["id"]: r for r in ref.records}
    d = batch_digest(batch_settings(CTX, eps))
    tid = [thread_id(d, eid) for eid, _ in eps]
    ctx = asdict(CTX)
    # What a client killed mid-batch leaves behind:
    fake = fake_server
    fake.create_run(tid[0], GRAPH_ID, input=eps[0][1], context=ctx, if_not_exists="create")
    fake.join(tid[0], fake.list_runs(tid[0])[0]["run_id"])                # 0: finished, not yet written
    fake.create_run(tid[1], GRAPH_ID, input=eps[1][1], context=ctx, if_not_exists="create")  # 1: still pending
    fake.create_run(tid[2], GRAPH_ID, input=eps[2][1], context=ctx, if_not_exists="create",
                    interrupt_before=["optimize"])
    fake.join(tid[2], fake.list_runs(tid[2])[0]["run_id"])                # 2: stopped after round 1
    fake.create_run(tid[3], GRAPH_ID, input={"env": {"family": "nosuch"}}, context=ctx, if_not_exists="create")
    fake.join(tid[3], fake.list_runs(tid[3])[0]["run_id"])                # 3: failed
    out = tmp_path / "server"                                             # 4: never started
    out.mkdir()
    (out / "episodes.jsonl").write_text(json.dumps(local[eps[5][0]]) + "\n")  # 5: written before the kill

    result = run_episodes(CTX, eps, out, concurrency=3, resume=True, server="http://fake", keep_checkpoints=True)
    records = _lines(out / "episodes.jsonl")
    assert sorted(r["id"] for r in records) == sorted(eid for eid, _ in eps) and result.ran == 5
    by_id = {r["id"]: r for r in records}
    for i in (0, 1, 2, 4, 5):
        assert _same(by_id[eps[i][0]], local[eps[i][0]]), eps[i][0]
    assert by_id[eps[3][0]]["status"] == "error"
    assert by_id[eps[3][0]]["error"].startswith("ValueError: unknown family 'nosuch'")
    runs = {i: fake.known[tid[i]]["runs"] for i in range(5)}
    assert [len(runs[i]) for i in range(5)] == [1, 1, 2, 1, 1]  # nothing resubmitted
    assert runs[2][0]["input"] is None                             # continued, not restarted
    assert runs[4][0]["input"] == eps[4][1] and runs[4][0]["context"] == ctx
    assert tid[5] not in fake.known                                # written episodes are not asked for
    assert json.loads((out / "run.json").read_text())["server"] == "http://fake" and fake.closed

    # without --keep-checkpoints the threads go once their lines are written
    again = run_episodes(CTX, eps, tmp_path / "again", server="http://fake")
    assert again.errors == 1 and not any(thread_id(d, eid) in fake.known for eid, _ in eps)


def test_a_run_another_client_started_meanwhile_is_joined(tmp_path, fake_server):
    eps = family_episodes("quadratic", 2, seed=2)
    d = batch_digest(batch_settings(CTX, eps))
    fake_server.raced = {thread_id(d, eid) for eid, _ in eps}
    result = run_episodes(CTX, eps, tmp_path / "o", server="http://fake", keep_checkpoints=True)
    local = {r["id"]: r for r in run_episodes(CTX, eps, tmp_path / "local").records}
    assert result.errors == 0 and all(_same(r, local[r["id"]]) for r in result.records)
    assert [len(fake_server.known[thread_id(d, eid)]["runs"]) for eid, _ in eps] == [1, 1]


def test_a_lost_server_stops_the_batch_and_keeps_its_files(tmp_path, fake_server):
    eps = family_episodes("quadratic", 4, seed=2)
    fake_server.fail_with = httpx.ConnectError("connection refused")
    out = tmp_path / "lost"
    with pytest.raises(ExecutorLost, match="lost the LangGraph server at http://fake .*--resume"):
        run_episodes(CTX, eps, out, concurrency=2, server="http://fake")
    assert (out / "run.json").exists() and _lines(out / "episodes.jsonl") == []
    fake_server.fail_with = None  # the server is back
    assert run_episodes(CTX, eps, out, resume=True, server="http://fake").errors == 0
    assert len(_lines(out / "episodes.jsonl")) == 4


def test_server_flag_is_checked_before_anything(tmp_path, capsys):
    from policies.backends.vllm_server import free_port

    out = tmp_path / "o"
    assert run_cmd.main(["--server", f"http://127.0.0.1:{free_port()}", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dara run: error: --server http://127.0.0.1:") and "no LangGraph server answers" in err
    assert len(err.splitlines()) == 1 and not out.exists()
    assert run_cmd.main(["--server", "localhost:2024", "--out", str(out), "--quiet"]) == 2
    assert "expected the http(s):// URL of a LangGraph server" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# a real langgraph dev server and the real CLI
# ---------------------------------------------------------------------------------------
NUMERIC = ["--family", "quadratic", "--episodes", "20", "--rounds", "10", "--seed", "3", "--reasoner", "heuristic",
           "--optimizer", "local-model", "--quiet"]
LLM = ["--family", "quadratic", "--episodes", "3", "--rounds", "2", "--seed", "3", "--reasoner", "llm",
       "--optimizer", "llm", "--base", "tiny-random", "--reasoner-adapter", "none", "--optimizer-adapter", "none",
       "--backend", "local", "--quiet"]


def _threads_of(argv: list[str]) -> dict[str, str]:
    """Episode id -> server thread id of the batch ``argv`` describes."""
    args = run_cmd.build_parser().parse_args([*argv, "--out", "x"])
    ctx = context_from_args(args, run_cmd.CONTEXT_FIELDS)
    eps = family_episodes(args.family, args.episodes, seed=args.seed)
    d = batch_digest(batch_settings(ctx, eps))
    return {eid: thread_id(d, eid) for eid, _ in eps}


def _cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "graph.commands.cli", "run", *argv]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_cli_batch_on_a_langgraph_server_survives_a_kill(tmp_path):
    """80-100 s: see the module docstring."""
    sdk = require("langgraph_sdk")
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    with langgraph_dev(tmp_path / "server.log", jobs=2) as url:
        client = sdk.get_sync_client(url=url)
        threads = _threads_of(NUMERIC)
        for tid in threads.values():  # a killed earlier session may have left this batch on the server
            try:
                client.threads.delete(tid)
            except Exception:  # noqa: BLE001 - not there: fine
                pass

        # 20 numeric episodes: SIGKILL the client mid-batch, then --resume
        out = tmp_path / "numeric"
        cmd = _cli("--server", url, *NUMERIC, "--out", str(out), "--concurrency", "4", "--keep-checkpoints")
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        ep = out / "episodes.jsonl"
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if ep.exists() and ep.read_bytes().count(b"\n") >= 3:
                break
            time.sleep(0.02)
        if proc.poll() is not None:
            pytest.fail(f"dara run --server ended before it could be killed (rc {proc.returncode}): "
                        + proc.stderr.read().decode()[-2000:])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        before = ep.read_bytes().count(b"\n")
        assert 3 <= before < 20
        r = subprocess.run(cmd + ["--resume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        eps = _lines(ep)
        assert sorted(e["id"] for e in eps) == sorted(threads)  # every episode exactly once
        assert json.loads((out / "run.json").read_text())["context"] == asdict(
            context_from_args(run_cmd.build_parser().parse_args([*NUMERIC, "--out", "x"]), run_cmd.CONTEXT_FIELDS))
        for eid, tid in threads.items():  # one run per episode: none was submitted twice
            runs = client.runs.list(tid)
            assert [x["status"] for x in runs] == ["success"], (eid, runs)
            assert client.threads.get(tid)["metadata"]["episode"] == eid  # findable in Studio
            client.threads.delete(tid)
        ref = tmp_path / "numeric-local"
        assert run_cmd.main([*NUMERIC, "--out", str(ref), "--concurrency", "4"]) == 0
        local = {e["id"]: e for e in _lines(ref / "episodes.jsonl")}
        for e in eps:
            assert e["status"] == "ok" and _same(e, local[e["id"]]), e["id"]
        assert (out / "summary.csv").read_text().splitlines()[0] == (ref / "summary.csv").read_text().splitlines()[0]
        assert (out / "rounds.png").stat().st_size > 1000

        # 3 tiny-random LLM episodes on the server's local backend
        llm_out = tmp_path / "llm"
        r = subprocess.run(_cli("--server", url, *LLM, "--out", str(llm_out)), cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        r = subprocess.run(_cli(*LLM, "--out", str(tmp_path / "llm-local")), cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        served = {e["id"]: e for e in _lines(llm_out / "episodes.jsonl")}
        local = {e["id"]: e for e in _lines(tmp_path / "llm-local" / "episodes.jsonl")}
        assert sorted(served) == sorted(local) and len(served) == 3
        for eid, e in served.items():
            assert e["status"] == "ok" and len(e["rounds"]) == 2
            assert [x["allocation"] for x in e["rounds"]] == [x["allocation"] for x in local[eid]["rounds"]]
            assert [x["text"] for x in e["rounds"]] == [x["text"] for x in local[eid]["rounds"]]
        assert not any(_thread_exists(client, tid) for tid in _threads_of(LLM).values())  # cleaned up


def _thread_exists(client, tid: str) -> bool:
    from langgraph_sdk.errors import NotFoundError

    try:
        client.threads.get(tid)
        return True
    except NotFoundError:
        return False
