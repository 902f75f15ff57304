"""Batch episodes as runs on a LangGraph server: the ``--server`` executor of
:func:`graph.commands.episodes.run_episodes`.

``dara run --server URL`` keeps all of a batch's bookkeeping local (``run.json``,
``episodes.jsonl``, the summary) and runs each episode as a run of the ``dara`` graph
(``langgraph.json``) on a server thread, through ``langgraph-sdk``. The server queues
and persists runs; the client keeps at most ``--concurrency`` of them pending or running
and waits for each.

Thread ids are deterministic, so a killed client resumes without rerunning anything:
:func:`thread_id` is ``uuid5`` of a fixed namespace, the batch digest
(:func:`batch_digest`: the context and the episodes, exactly what ``run.json``'s resume
check compares, never the output directory) and the episode id. The same batch always
names the same threads; a batch with another context or other episodes never meets them.
On (re)start an episode's thread decides what happens (:func:`next_step`):

- finished (``done`` in its state): its values are read back, not rerun;
- a run pending or running (submitted before the client died): joined, not resubmitted;
- the last run failed: recorded as failed (a local batch records the error the same way);
- stopped mid-episode (run cancelled or timed out): continued from its last checkpoint;
- never started: created and run with the episode's input.

The run's context is the batch's :class:`graph.context.Context` as a dict; the server's
``studio_graph`` rejects keys it does not know, and :func:`check_server` refuses a
server whose ``dara`` graph lacks any field of this version's context before any episode.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
import uuid
from dataclasses import asdict
from typing import Any

from graph.commands.episodes import ExecutorLost
from graph.context import Context
from tools.cli_errors import InputError

GRAPH_ID = "dara"
"""The graph id under which ``langgraph.json`` serves ``./graph/graph.py:studio_graph``."""
THREAD_NAMESPACE = uuid.UUID("5b0d7f2e-3c1a-5e8b-9d4f-2a6c8e0b1d3f")
"""Namespace of episode thread ids (fixed: changing it orphans every server thread)."""
ACTIVE = ("pending", "running")
"""Run statuses that will still end by themselves: join them."""
JOIN_TIMEOUT_S = 300.0


class RunFailed(Exception):
    """An episode's run failed on the server; ``remote_type`` is the graph's exception type
    (so ``episodes.jsonl`` says ``ValueError: ...`` as a local batch would)."""

    def __init__(self, remote_type: str, message: str):
        super().__init__(message)
        self.remote_type = remote_type


def batch_digest(settings: dict) -> str:
    """What identifies a batch wherever its files go: its context and episodes (count and
    digest), i.e. what a resume must not change (``run.json`` minus ``source``)."""
    key = {"context": settings["context"], "episodes": settings["episodes"]}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def thread_id(digest: str, episode_id: str) -> str:
    """The server thread of ``episode_id`` in the batch ``digest`` (a UUID, as the server requires)."""
    return str(uuid.uuid5(THREAD_NAMESPACE, f"{digest}/{episode_id}"))


def finished(state: dict) -> bool:
    """A thread state whose episode is over (``done``, nothing left to run)."""
    return bool((state.get("values") or {}).get("done")) and not state.get("next")


def next_step(state: dict | None, runs: list[dict]) -> tuple[str, dict | None]:
    """What to do with an episode's thread, from its state (None: no such thread) and its
    runs (newest first, as the server lists them): ``("read", None)``, ``("join", run)``,
    ``("failed", run)``, ``("continue", None)`` or ``("start", None)``."""
    if state is None:
        return "start", None
    if finished(state):
        return "read", None
    active = [r for r in runs if r.get("status") in ACTIVE]
    if active:
        return "join", active[-1]  # the oldest: later ones would queue behind it
    if runs and runs[0].get("status") == "error":
        return "failed", runs[0]
    if state.get("checkpoint") or state.get("metadata"):
        return "continue", None  # stopped mid-episode: go on from the last checkpoint
    return "start", None


def _is_lost(error: BaseException) -> bool:
    """A failure of the server or the network (the batch stops; ``--resume`` continues),
    as opposed to a failure of one episode."""
    import httpx

    if isinstance(error, httpx.TransportError):
        return True
    response = getattr(error, "response", None)
    return isinstance(error, httpx.HTTPStatusError) and response is not None and response.status_code >= 500


class ServerEpisodes:
    """The ``--server`` executor: each :meth:`run` call is one episode as a server run
    (see the module docstring); the batch's worker threads share one HTTP client."""

    files: tuple[str, ...] = ()

    def __init__(self, url: str, context: Context, settings: dict, client: Any = None):
        self.url = url
        self.context = asdict(context)
        self.digest = batch_digest(settings)
        self.client = client

    # ---- the executor interface of run_episodes ------------------------------------------
    def open(self, out) -> None:
        if self.client is None:
            import httpx
            from langgraph_sdk import get_sync_client

            timeout = httpx.Timeout(connect=5.0, read=JOIN_TIMEOUT_S, write=60.0, pool=None)
            self.client = get_sync_client(url=self.url, timeout=timeout)

    def run(self, eid: str, inp: dict[str, Any]) -> dict:
        try:
            return self._run(eid, inp)
        except Exception as e:
            if _is_lost(e):
                raise ExecutorLost(f"lost the LangGraph server at {self.url} ({type(e).__name__}: {e}); "
                                   "finished episodes are kept: rerun with --resume") from e
            raise

    def forget(self, eid: str) -> None:
        self.client.threads.delete(thread_id(self.digest, eid))

    def close(self) -> None:
        if self.client is not None:
            self.client.close()

    # ---- one episode --------------------------------------------------------------------
    def look(self, tid: str) -> tuple[str, dict | None, dict | None]:
        """:func:`next_step` for thread ``tid`` as the server has it now, and its state."""
        from langgraph_sdk.errors import NotFoundError

        try:
            state = self.client.threads.get_state(tid)
        except NotFoundError:
            return (*next_step(None, []), None)
        runs = [] if finished(state) else self.client.runs.list(tid, limit=20)  # finished: no need
        return (*next_step(state, runs), state)

    def _run(self, eid: str, inp: dict[str, Any]) -> dict:
        from langgraph_sdk.errors import ConflictError

        tid = thread_id(self.digest, eid)
        for _ in range(5):  # a conflict means another client took the thread meanwhile: look again
            step, run, state = self.look(tid)
            if step == "read":
                return state["values"]
            if step == "failed":
                raise self._failure(tid, run)
            if step == "join":
                run_id = run["run_id"]
            else:
                if step == "start":
                    self.client.threads.create(thread_id=tid, if_exists="do_nothing", graph_id=GRAPH_ID,
                                               metadata={"episode": eid, "batch": self.digest[:16]})
                try:
                    run_id = self.client.runs.create(
                        tid, GRAPH_ID, input=inp if step == "start" else None, context=self.context,
                        if_not_exists="create", multitask_strategy="reject")["run_id"]
                except ConflictError:
                    continue
            self._join(tid, run_id)
            state = self.client.threads.get_state(tid)
            if finished(state):
                return state["values"]
            run = self.client.runs.get(tid, run_id)
            if run.get("status") == "error":
                raise self._failure(tid, run)
            raise RuntimeError(f"run {run_id} of thread {tid} ended with status {run.get('status')!r} "
                               "before the episode finished")
        raise RuntimeError(f"thread {tid}: other clients kept starting runs on it")

    def _join(self, tid: str, run_id: str) -> None:
        """Wait for run ``run_id`` however long the server's queue is."""
        import httpx

        while True:
            try:
                self.client.runs.join(tid, run_id)
                return
            except httpx.ReadTimeout:
                continue  # still queued or running: wait again

    def _failure(self, tid: str, run: dict | None) -> RunFailed:
        error = self.client.threads.get(tid).get("error") or {}
        run_id = (run or {}).get("run_id")
        return RunFailed(str(error.get("error") or "RunError"),
                         str(error.get("message") or f"run {run_id} failed on the server"))


# ---------------------------------------------------------------------------------------
# preflight
# ---------------------------------------------------------------------------------------
def check_server(url: str, context: Context, *, timeout: float = 5.0) -> None:
    """Fail fast (``InputError`` naming ``--server``) unless a LangGraph server answers at
    ``url`` and serves a ``dara`` graph that knows every field of ``context``."""
    flag = "--server"
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise InputError(flag, url, "expected the http(s):// URL of a LangGraph server, e.g. http://127.0.0.1:2024")
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/ok", timeout=timeout) as r:  # noqa: S310 - user URL
            r.read()
    except (urllib.error.URLError, OSError, ValueError) as e:
        why = getattr(e, "reason", None) or e
        raise InputError(flag, url, f"no LangGraph server answers ({type(e).__name__}: {why}); start one "
                                    "from the DARA checkout: langgraph dev --no-browser") from None
    try:
        from langgraph_sdk import get_sync_client
    except ImportError:
        raise InputError(flag, url, "needs langgraph-sdk: pip install 'dara[studio]'") from None
    client = get_sync_client(url=url, timeout=timeout)
    try:
        found = client.assistants.search(graph_id=GRAPH_ID, limit=1)
        if not found:
            served = sorted({a.get("graph_id") for a in client.assistants.search(limit=100)} - {None})
            raise InputError(flag, url, f"serves no {GRAPH_ID!r} graph (it serves {', '.join(served) or 'none'}); "
                                        "start the server from the DARA checkout (its langgraph.json)")
        schema = client.assistants.get_schemas(found[0]["assistant_id"]).get("context_schema") or {}
    except InputError:
        raise
    except Exception as e:  # not a LangGraph API, or it failed: the batch could not run
        raise InputError(flag, url, f"does not answer as a LangGraph server ({type(e).__name__}: {e})") from None
    finally:
        client.close()
    known = set(schema.get("properties") or {})
    missing = sorted(set(asdict(context)) - known)
    if known and missing:
        raise InputError(flag, url, f"its {GRAPH_ID!r} graph has no context field(s) {', '.join(missing)} "
                                    "(another DARA version); restart it from this checkout")
