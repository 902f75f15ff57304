"""Run many episodes through the DARA graph, concurrently and durably: :func:`run_episodes`.

Every episode is one graph thread, exactly as Studio sees it. ``dara run``, the LLM rows
of ``dara bench`` and ``dara demo`` all come through here with a typed
:class:`graph.context.Context`. The batch's bookkeeping is the same whoever runs the
episodes; only "run one episode" differs, behind a small executor interface
(``files``, ``open``, ``run``, ``forget``, ``close``):

- :class:`LocalEpisodes` (default): graph threads in this process (``thread_id`` =
  episode id) on a SQLite checkpointer; episodes run in a thread pool and the chat-model
  backend coalesces their concurrent generation requests into batched calls, so
  throughput comes from batching, not from a bypass of the graph;
- :class:`graph.commands.server_episodes.ServerEpisodes` (``server=URL``): runs of the
  ``dara`` graph on a LangGraph server, at most ``concurrency`` in flight.

Files in ``out``:

- ``episodes.jsonl`` (``graph.commands.episode_log``): one line per finished episode;
- ``checkpoints.sqlite`` (``CHECKPOINTS``, local only): LangGraph ``SqliteSaver``, so a
  killed batch restarted with ``resume=True`` skips finished episodes (by id) and
  continues in-flight ones from their last checkpoint: nothing is lost or duplicated
  (on a server, the server's threads play that part);
- ``run.json``: the context, each model role's adapter weights hash and the episodes
  (count and digest); a resume with different ones is refused, naming what differs.

A malformed model answer is recorded in its round (source ``fallback``); an episode that
fails outright is recorded with ``"status": "error"``; neither stops the batch. Losing the
executor itself (the server went away: :class:`ExecutorLost`) stops the batch with its
files kept. A batch that fails before its first episode (bad settings, an unusable
``out``) removes what it created; once episodes run, the files stay so ``resume=True`` can
continue.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from graph.commands.episode_log import EPISODES, EpisodeWriter, episode_record, error_record, repair_and_read
from graph.commands.episode_sources import Episode
from graph.context import Context

SETTINGS = "run.json"
CHECKPOINTS = "checkpoints.sqlite"


class _NewFiles:
    """What a batch is about to create in ``out`` (the directory itself included), so a
    batch that fails before its first episode can remove exactly that and nothing older."""

    def __init__(self, out: Path, names: Sequence[str]):
        self.out = out
        self.dirs = [p for p in (out, *out.parents) if not p.exists()]
        self.files = [out / n for n in names if not (out / n).exists()]

    def remove(self) -> None:
        for f in self.files:
            for extra in ("", "-wal", "-shm", "-journal"):
                Path(str(f) + extra).unlink(missing_ok=True)
        for d in self.dirs:  # innermost first
            try:
                d.rmdir()
            except OSError:
                break


class ExecutorLost(RuntimeError):
    """The executor can run no more episodes (e.g. its server went away): the batch stops,
    unlike an episode's own failure, which is recorded and the batch goes on."""


@dataclass
class BatchResult:
    """What :func:`run_episodes` did: every record in ``out`` and how many ran now."""

    records: list[dict] = field(default_factory=list)
    ran: int = 0
    seconds: float = 0.0

    @property
    def errors(self) -> int:
        return sum(1 for r in self.records if r.get("status") == "error")


def run_episode_thread(graph, eid: str, inp: dict, ctx: Context) -> dict:
    """Run (or resume) one episode on thread ``eid``; returns its final state values."""
    config = {"configurable": {"thread_id": eid}}
    snap = graph.get_state(config)
    if snap.values and snap.values.get("done") and not snap.next:
        return snap.values  # finished before the kill, but not yet written
    if snap.metadata is not None:
        # In flight when killed: continue from the last checkpoint. Its step's finished
        # tasks may already have saved their writes, in which case ``snap.next`` is empty
        # although the episode is not done; ``invoke(None)`` applies those writes and goes
        # on. Restarting with ``inp`` here would append the episode's rounds a second time.
        graph.invoke(None, config, context=ctx)
    else:
        graph.invoke(inp, config, context=ctx)
    return graph.get_state(config).values


class LocalEpisodes:
    """Episodes as graph threads in this process, checkpointed in ``out/checkpoints.sqlite``."""

    files = (CHECKPOINTS,)

    def __init__(self, context: Context):
        self.context = context
        self.conn = self.saver = self.graph = None

    def open(self, out: Path) -> None:
        from langgraph.checkpoint.sqlite import SqliteSaver

        from graph.graph import build_graph

        self.conn = sqlite3.connect(str(out / CHECKPOINTS), check_same_thread=False)
        self.saver = SqliteSaver(self.conn)
        self.saver.setup()
        self.graph = build_graph(checkpointer=self.saver)

    def run(self, eid: str, inp: dict[str, Any]) -> dict:
        return run_episode_thread(self.graph, eid, inp, self.context)

    def forget(self, eid: str) -> None:
        self.saver.delete_thread(eid)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def batch_settings(context: Context, episodes: Sequence[Episode], source: dict | None = None) -> dict:
    """The ``run.json`` of a batch: what must not change when it is resumed. ``adapters``
    holds each model role's adapter weights hash: an empty ``context.*_adapter`` means "the
    shipped one", and a resume after the shipped adapter was replaced must not mix the two."""
    from graph.provenance import provenance

    digest = hashlib.sha256(json.dumps(list(episodes), sort_keys=True).encode()).hexdigest()
    adapters = {role: a["sha256"] for role, a in provenance(context)["adapters"].items()}
    return {"context": asdict(context), "adapters": adapters,
            "episodes": {"count": len(episodes), "sha256": digest}, "source": dict(source or {})}


# Context fields added after run.json files were first written, with the value that
# reproduces the behaviour before them: a batch started then resumes only with that value.
ADDED_FIELDS = {"resample": 0}


def check_resumable(old: dict, new: dict) -> None:
    """Refuse to resume a batch with another context or other episodes, naming the change."""
    if "context" not in old or "episodes" not in old:
        raise ValueError(f"--resume: {SETTINGS} was written by an older dara run; choose a new --out")
    before = {**{k: v for k, v in ADDED_FIELDS.items() if k in new["context"]}, **old["context"]}
    diff = [f"context.{k} was {v!r}" + (" (the field did not exist yet)" if k not in old["context"] else "")
            + f", now {new['context'].get(k)!r}"
            for k, v in before.items() if new["context"].get(k) != v]
    if "adapters" in old and old["adapters"] != new["adapters"]:  # older run.json files have none
        diff.append(f"adapter weights were {old['adapters']}, now {new['adapters']} (an adapter was retrained "
                    "or the shipped one replaced)")
    if old["episodes"] != new["episodes"]:
        what = ", ".join(f"{k} {old['source'][k]!r} -> {new['source'].get(k)!r}"
                         for k in old.get("source", {}) if new["source"].get(k) != old["source"][k])
        diff.append(f"episodes were {old['episodes']['count']}, now {new['episodes']['count']}"
                    + (f" ({what})" if what else " (other inputs)"))
    if diff:
        raise ValueError("--resume with different settings: " + "; ".join(diff))


def run_episodes(context: Context, episodes: Sequence[Episode], out: str | Path, concurrency: int = 8,
                 resume: bool = False, *, source: dict | None = None, keep_checkpoints: bool = False,
                 progress: bool = False, label: str = "episodes", server: str | None = None) -> BatchResult:
    """Run ``episodes`` (``(id, graph input)`` pairs) under ``context``, writing to ``out``.

    ``resume`` continues a batch killed in ``out`` (else ``out`` must hold none);
    ``source`` describes where the episodes came from (kept in ``run.json`` to explain a
    refused resume); ``keep_checkpoints`` keeps finished episodes' threads (local
    checkpoints or server threads); ``progress`` shows a progress line on stderr
    (``label``, episodes done/total, elapsed, remaining); ``server`` runs the episodes on
    the LangGraph server at that URL instead of in this process.
    """
    from tqdm import tqdm

    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"--concurrency must be >= 1, got {concurrency}")
    if context.feedback != "simulator" or context.approval:
        raise ValueError("batch episodes observe a simulator without pauses: context.feedback must be "
                         f"'simulator' and context.approval false, got {context.feedback!r}, {context.approval!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: is a file; expected a directory")
    ep_path = out / EPISODES
    settings = batch_settings(context, episodes, source)
    if resume and (out / SETTINGS).exists():
        check_resumable(json.loads((out / SETTINGS).read_text()), settings)
    elif not resume and ep_path.exists() and ep_path.stat().st_size > 0:
        raise ValueError(f"{ep_path} already exists; pass --resume to continue that run or choose a new --out")
    if server:
        from graph.commands.server_episodes import ServerEpisodes

        executor = ServerEpisodes(server, context, settings)
        settings["server"] = server  # a record only: the resume check ignores it
    else:
        executor = LocalEpisodes(context)
    made = _NewFiles(out, (SETTINGS, EPISODES, *executor.files))
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / SETTINGS).write_text(json.dumps(settings, indent=2))
        finished = repair_and_read(ep_path)
        done_ids = {r["id"] for r in finished}
        todo = [(eid, inp) for eid, inp in episodes if eid not in done_ids]
        executor.open(out)
        writer = EpisodeWriter(ep_path)
    except BaseException:
        executor.close()
        made.remove()  # failed before its first episode: leave nothing behind
        raise
    if progress and len(todo) < len(episodes):  # say so: reused episodes are not rerun on new code
        print(f"{label}: {len(episodes) - len(todo)} of {len(episodes)} episodes are already in {ep_path} "
              f"and are reused, not rerun (delete {out} to rerun them)", file=sys.stderr)
    bar = tqdm(total=len(episodes), initial=len(episodes) - len(todo), desc=label,
               unit="ep", disable=not progress, file=sys.stderr, mininterval=0.5)
    result = BatchResult(records=list(finished), ran=len(todo))
    lock = threading.Lock()

    def one(eid: str, inp: dict[str, Any]) -> dict:
        t0 = time.perf_counter()
        try:
            values = executor.run(eid, inp)
            rec = episode_record(eid, values, context, time.perf_counter() - t0)
        except ExecutorLost:
            raise  # the batch stops; this episode is not recorded, so --resume runs it
        except Exception as e:  # recorded, never fatal for the batch
            rec = error_record(eid, e)
        writer.write(rec)
        if not keep_checkpoints:
            try:
                executor.forget(eid)
            except Exception:
                pass
        return rec

    t0 = time.perf_counter()
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="episode")
    try:
        for fut in as_completed([pool.submit(one, eid, inp) for eid, inp in todo]):
            rec = fut.result()
            with lock:
                result.records.append(rec)
            bar.update(1)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # after a failure: start no more episodes
        bar.close()
        writer.close()
        result.seconds = time.perf_counter() - t0
        executor.close()
    return result
