"""``dara run``: scripted batch episodes through the DARA graph.

Every episode is one graph thread (``thread_id`` = episode id), exactly as Studio sees
it; episodes run concurrently in a thread pool, and the chat-model backend coalesces
their concurrent generation requests into batched calls, so CPU throughput comes from
batching, not from a bypass of the graph.

Outputs in ``--out DIR``:

- ``episodes.jsonl`` — one whole line per finished episode, appended and fsynced
  atomically under a lock: ``{"id", "rounds": [{"round", "proposal", "allocation",
  "mroi", "source", "text", "error", "budget_reasons"}...], "regret": [...],
  "mroi_var": [...], "dispersion": [...], "stop_reason", ...}``;
- ``summary.csv`` — per round: mean/median regret, MROI variance, dispersion,
  fallback and carried rates;
- ``rounds.png`` — regret per round (mean and inter-quartile band);
- ``checkpoints.sqlite`` — LangGraph ``SqliteSaver``: a killed batch restarted with
  ``--resume`` skips finished episodes (by id) and resumes in-flight ones from their
  last checkpoint, so nothing is lost or duplicated; a torn last line is repaired;
- ``run.json`` — the run's settings (``--resume`` refuses different ones).

A malformed model answer is recorded (source ``fallback``, ``error``), never fatal; an
episode that fails outright is recorded with ``"status": "error"``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sqlite3
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from graph.context import ENCODINGS, Context

EPISODES = "episodes.jsonl"
SETTINGS = "run.json"
# Settings that must match when resuming (the rest may change, e.g. concurrency).
_FIXED = ("family", "episodes", "rounds", "seed", "periods", "budget", "noise", "history",
          "tasks", "reasoner", "optimizer", "backend", "base", "reasoner_adapter",
          "optimizer_adapter", "reasoner_encoding", "optimizer_encoding", "window",
          "tolerance", "temperature")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dara run", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", default="quadratic", help="environment family (tools.envs.FAMILIES)")
    p.add_argument("--episodes", type=int, default=20, help="number of episodes (environments 0..N-1)")
    p.add_argument("--rounds", type=int, default=5, help="K: rounds per episode")
    p.add_argument("--seed", type=int, default=0, help="environment seed and feedback-noise seed")
    p.add_argument("--periods", type=int, default=6, help="T: slots per environment (synthetic families)")
    p.add_argument("--budget", type=float, default=6.0, help="B: total budget (synthetic families)")
    p.add_argument("--noise", type=float, default=0.0, help="feedback noise (coefficient of variation)")
    p.add_argument("--history", type=int, default=3, help="few-shot records per task")
    p.add_argument("--tasks", default=None,
                   help="JSONL of episodes instead of --family: each line {\"id\"?, \"task\"?, \"env\"} "
                        "where env is an EnvBatch spec with \"index\" (simulator feedback needs one)")
    p.add_argument("--reasoner", default="llm", help="llm or a baseline (uniform, heuristic, gradient, local-model)")
    p.add_argument("--optimizer", default="llm", help="llm or a baseline")
    p.add_argument("--backend", default="local", choices=["local", "vllm", "openai"])
    p.add_argument("--base", default="embedded", help="embedded, tiny-random or an HF model dir")
    p.add_argument("--reasoner-adapter", default=None)
    p.add_argument("--optimizer-adapter", default=None)
    p.add_argument("--reasoner-encoding", default=None, choices=list(ENCODINGS))
    p.add_argument("--optimizer-encoding", default=None, choices=list(ENCODINGS))
    p.add_argument("--window", type=int, default=3, help="Optimizer's sliding window w")
    p.add_argument("--tolerance", type=float, default=0.0, help="stop when MROI dispersion < this (0 = never)")
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--resume", action="store_true", help="continue a killed run in --out")
    p.add_argument("--concurrency", type=int, default=8, help="episodes in flight at once")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep finished episodes' checkpoints (default: delete once written)")
    p.add_argument("--quiet", action="store_true", help="no progress bar / table")
    return p


# ---- episodes.jsonl ----------------------------------------------------------------------------
def repair_and_read(path: Path) -> list[dict]:
    """Read finished episodes; truncate a torn last line (a kill mid-write)."""
    if not path.exists():
        return []
    data = path.read_bytes()
    cut = data.rfind(b"\n") + 1
    if cut < len(data):  # torn tail: drop it
        with open(path, "r+b") as f:
            f.truncate(cut)
            f.flush()
            os.fsync(f.fileno())
        data = data[:cut]
    out = []
    for n, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: corrupt line ({e}); remove it and rerun with --resume") from None
    return out


class EpisodeWriter:
    """Appends one whole JSON line per episode: one ``write`` + ``fsync`` under a lock."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, record: dict) -> None:
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        with self.lock:
            os.write(self.fd, line)
            os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


# ---- episodes to run ---------------------------------------------------------------------------
def family_episodes(args) -> list[tuple[str, dict]]:
    from tools.envs import make_envs

    if args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    kw = {}
    if args.family in ("quadratic", "exponential", "hill"):
        kw = {"periods": args.periods, "budget": args.budget}
    env = make_envs(args.family, args.episodes, seed=args.seed, noise=args.noise, history=args.history, **kw)
    spec = json.loads(json.dumps(env.spec))
    return [(f"{args.family}-s{args.seed}-{i:05d}", {"env": {**spec, "index": i}}) for i in range(args.episodes)]


def task_episodes(path: str) -> list[tuple[str, dict]]:
    """Episodes from a JSONL file: ``{"id"?, "task"?, "env"}`` per line."""
    from graph.feedback import normalise_env
    from tools.task import Task

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"--tasks file not found: {p}")
    out, seen = [], set()
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}:{n}: not valid JSON ({e})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{p}:{n}: expected an object, got {type(obj).__name__}")
        if "env" not in obj:
            raise ValueError(
                f"{p}:{n}: no 'env': dara run observes feedback from a simulator, so each line needs "
                "{\"task\"?: {...}, \"env\": {<EnvBatch spec>, \"index\": i}}; for one real task with "
                "live feedback use 'dara allocate --task task.json --live'"
            )
        eid = str(obj.get("id", f"task-{n:05d}"))
        if eid in seen:
            raise ValueError(f"{p}:{n}: duplicate id {eid!r}")
        seen.add(eid)
        inp: dict[str, Any] = {"env": normalise_env(obj["env"])}
        if obj.get("task") is not None:
            try:
                inp["task"] = Task.model_validate(obj["task"]).model_dump(exclude_none=True)
            except ValueError as e:
                raise ValueError(f"{p}:{n}: bad task: {e}") from None
        out.append((eid, inp))
    if not out:
        raise ValueError(f"{p}: no episodes")
    return out


# ---- one episode -------------------------------------------------------------------------------
def episode_record(eid: str, values: dict, ctx: Context, seconds: float) -> dict:
    rounds = values.get("rounds") or []
    rec = {
        "id": eid,
        "status": "ok",
        "reasoner": ctx.reasoner,
        "optimizer": ctx.optimizer,
        "rounds": [
            {
                "round": r["round"], "source": r["source"], "proposal": r.get("proposal"),
                "allocation": r["allocation"], "mroi": r["mroi"], "text": r.get("text", ""),
                "error": r.get("error"),
                "budget_reasons": (r.get("budget") or {}).get("reasons", []),
            }
            for r in rounds
        ],
        "stop_reason": values.get("stop_reason"),
        "seconds": round(seconds, 3),
        "env": values.get("env"),
    }
    for m in ("regret", "mroi_var", "dispersion"):
        rec[m] = [(r.get("metrics") or {}).get(m) for r in rounds]
    if values.get("oracle"):
        rec["oracle"] = values["oracle"]
    return rec


def run_episode(graph, eid: str, inp: dict, ctx: Context) -> dict:
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


# ---- summaries ---------------------------------------------------------------------------------
def summarise(records: Iterable[dict]) -> list[dict]:
    ok = [r for r in records if r.get("status", "ok") == "ok" and r.get("rounds")]
    if not ok:
        return []
    K = max(len(r["rounds"]) for r in ok)
    rows = []
    for k in range(K):
        have = [r for r in ok if len(r["rounds"]) > k]
        reg = np.array([r["regret"][k] for r in have if r["regret"][k] is not None], float)
        var = np.array([r["mroi_var"][k] for r in have if r["mroi_var"][k] is not None], float)
        dis = np.array([r["dispersion"][k] for r in have if r["dispersion"][k] is not None], float)
        src = [r["rounds"][k]["source"] for r in have]
        rows.append({
            "round": k + 1,
            "episodes": len(have),
            "regret_mean": float(reg.mean()) if reg.size else "",
            "regret_median": float(np.median(reg)) if reg.size else "",
            "regret_p25": float(np.percentile(reg, 25)) if reg.size else "",
            "regret_p75": float(np.percentile(reg, 75)) if reg.size else "",
            "mroi_var_mean": float(var.mean()) if var.size else "",
            "dispersion_mean": float(dis.mean()) if dis.size else "",
            "fallback_rate": src.count("fallback") / len(src),
            "carried_rate": src.count("carried") / len(src),
        })
    return rows


def write_summary(rows: list[dict], out: Path) -> None:
    if not rows:
        return
    with open(out / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    if any(r["regret_mean"] != "" for r in rows):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        ks = [r["round"] for r in rows if r["regret_mean"] != ""]
        sel = [r for r in rows if r["regret_mean"] != ""]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(ks, [100 * r["regret_mean"] for r in sel], "o-", label="mean")
        ax.plot(ks, [100 * r["regret_median"] for r in sel], "s--", label="median")
        ax.fill_between(ks, [100 * r["regret_p25"] for r in sel], [100 * r["regret_p75"] for r in sel],
                        alpha=0.2, label="25-75%")
        ax.set_xlabel("round")
        ax.set_ylabel("value regret (%)")
        ax.set_xticks(ks)
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "rounds.png", dpi=120)
        plt.close(fig)


def format_table(rows: list[dict]) -> str:
    lines = ["round  episodes  regret%(mean)  regret%(median)  mroi_var    fallback  carried"]
    for r in rows:
        reg = f"{100 * r['regret_mean']:13.3f}" if r["regret_mean"] != "" else f"{'-':>13}"
        med = f"{100 * r['regret_median']:15.3f}" if r["regret_median"] != "" else f"{'-':>15}"
        var = f"{r['mroi_var_mean']:.3e}" if r["mroi_var_mean"] != "" else "-"
        lines.append(f"{r['round']:5d}  {r['episodes']:8d}  {reg}  {med}  {var:>9}  "
                     f"{100 * r['fallback_rate']:7.1f}%  {100 * r['carried_rate']:6.1f}%")
    return "\n".join(lines)


# ---- main ----------------------------------------------------------------------------------------
def _settings(args) -> dict:
    return {k: getattr(args, k) for k in _FIXED}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _main(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"dara run: error: {e}", file=sys.stderr)
        return 2


def _main(args) -> int:
    from langgraph.checkpoint.sqlite import SqliteSaver
    from tqdm import tqdm

    from graph.graph import build_graph

    if args.concurrency < 1:
        raise ValueError(f"--concurrency must be >= 1, got {args.concurrency}")
    ctx = Context(
        reasoner=args.reasoner, optimizer=args.optimizer, backend=args.backend, base=args.base,
        reasoner_adapter=args.reasoner_adapter, optimizer_adapter=args.optimizer_adapter,
        reasoner_encoding=args.reasoner_encoding, optimizer_encoding=args.optimizer_encoding,
        window=args.window, max_rounds=args.rounds, tolerance=args.tolerance, seed=args.seed,
        temperature=args.temperature, feedback="simulator", approval=False,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ep_path = out / EPISODES
    settings = _settings(args)
    if args.resume:
        old_path = out / SETTINGS
        if old_path.exists():
            old = json.loads(old_path.read_text())
            diff = [k for k in _FIXED if old.get(k) != settings.get(k)]
            if diff:
                raise ValueError("--resume with different settings: " + ", ".join(
                    f"{k} was {old.get(k)!r}, now {settings.get(k)!r}" for k in diff))
    elif ep_path.exists() and ep_path.stat().st_size > 0:
        raise ValueError(f"{ep_path} already exists; pass --resume to continue that run or choose a new --out")
    (out / SETTINGS).write_text(json.dumps(settings, indent=2))

    episodes = task_episodes(args.tasks) if args.tasks else family_episodes(args)
    finished = repair_and_read(ep_path)
    done_ids = {r["id"] for r in finished}
    todo = [(eid, inp) for eid, inp in episodes if eid not in done_ids]

    conn = sqlite3.connect(str(out / "checkpoints.sqlite"), check_same_thread=False)
    saver = SqliteSaver(conn)
    saver.setup()
    graph = build_graph(checkpointer=saver)
    writer = EpisodeWriter(ep_path)
    bar = tqdm(total=len(episodes), initial=len(episodes) - len(todo), desc="episodes",
               unit="ep", disable=args.quiet, file=sys.stderr, mininterval=0.5)
    records = list(finished)
    rec_lock = threading.Lock()

    def one(eid: str, inp: dict) -> dict:
        t0 = time.perf_counter()
        try:
            values = run_episode(graph, eid, inp, ctx)
            rec = episode_record(eid, values, ctx, time.perf_counter() - t0)
        except Exception as e:  # recorded, never fatal for the batch
            rec = {"id": eid, "status": "error", "error": f"{type(e).__name__}: {e}", "rounds": [],
                   "regret": [], "mroi_var": [], "dispersion": []}
        writer.write(rec)
        if not args.keep_checkpoints:
            try:
                saver.delete_thread(eid)
            except Exception:
                pass
        return rec

    t0 = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=args.concurrency, thread_name_prefix="episode") as pool:
            futures = [pool.submit(one, eid, inp) for eid, inp in todo]
            for fut in as_completed(futures):
                rec = fut.result()
                with rec_lock:
                    records.append(rec)
                bar.update(1)
    finally:
        bar.close()
        writer.close()
    elapsed = time.perf_counter() - t0
    rows = summarise(records)
    write_summary(rows, out)
    errors = sum(1 for r in records if r.get("status") == "error")
    if not args.quiet:
        print(format_table(rows))
        rate = len(todo) / elapsed * 60 if elapsed > 0 and todo else float("nan")
        print(f"{len(records)} episodes in {out} ({len(todo)} run now in {elapsed:.1f}s, "
              f"{rate:.1f} episodes/min; {errors} failed)")
    conn.close()
    return 0 if errors == 0 else 1
