"""Decisions per second of the Optimizer on the embedded model + a LoRA adapter
(``--base tiny-random --adapter none`` for a quick run of the code paths).

Same prompts (N Optimizer prompts, quadratic family, default delta encoding), greedy,
one run per configuration:

- ``local`` batch 1   — transformers + PEFT, one prompt per ``generate`` call;
- ``local`` batched   — the same, ``--batch-size`` prompts per call (``sdpa_gqa`` attention,
  the batch's common prompt prefix prefilled once: ``policies.backends.prefix_prefill``);
- ``local-plain``     — batched as before those two (``sdpa``, every row prefilled whole),
  timed in the same process on the same prompts, for the ratio;
- ``vllm``            — vLLM's offline engine (worker subprocess), all prompts in one call;
- ``local-bf16p``     — ``local`` batched with the prompt run under bf16 autocast and the
  decode in fp32 (``bf16_prefill``); ``threads-bf16p`` the same on the threads path;
- ``threads``         — the path concurrent ``dara run`` episodes take: ``--threads``
  callers each ask an ``llm`` Optimizer policy (local backend) for ONE decision at a
  time; the backend's request coalescer gathers them into batched generates;
- ``graph``           — the whole path: ``--threads`` episodes through the DARA graph at
  once (``graph.commands.episodes.run_episodes``: budget tool, environment, SQLite
  checkpoints, JSONL), round 1 ``uniform`` and N / ``--threads`` Optimizer rounds each on
  the same family and T; decisions/s counts the Optimizer's decisions over the run's wall time;
  ``graph-window-only`` the same with the coalescer's straggler wait off (its window only,
  the behaviour before the wait), for the ratio.

Decisions/s = prompts / wall time of generation (model loading and vLLM start-up are
reported separately, not counted). Tokens/s counts generated tokens. "parseable" is the
share of texts :func:`policies.prompts.decode` turns into an allocation (a random test
adapter gives ~0; the shipped adapter should give ~100%).

    python benchmarks/decisions_per_second.py                 # 64 prompts, all three
    python benchmarks/decisions_per_second.py --batch1-limit 16   # batch-1 rate on 16 prompts
    python benchmarks/decisions_per_second.py --n 32 --backends threads --threads 8
    python benchmarks/decisions_per_second.py --backends local,threads --periods 16 \
        --adapter training/runs/gen-sft-optimizer/adapter --encoding delta-slope

``--periods``/``--family``/``--encoding`` choose the prompts (default: the T = 6 quadratic
prompts of the first figure); the new-token cap follows T
(:func:`policies.prompts.answer_token_cap`) unless ``--max-new-tokens`` is given.

``--processes K`` runs every backend row in a fresh process of its own, K times, the rows'
order reversed every other time (A B, B A, ...). Rows timed one after another in one
process are not independent: on a 2-core EPYC the graph row ran 12-16% behind the batched
row timed before it in the same process, and level with it in processes of their own
(docs/benchmarks.md). Use it for any ratio between rows; the greedy-text comparisons
between rows need them in one process and are not made.

Writes a Markdown table to stdout and ``benchmarks/results/decisions_per_second.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _adapter(arg: str | None, base: str) -> tuple[str | None, str]:
    """(adapter dir, description): --adapter (``none`` = the base model alone), else the
    shipped optimizer (embedded base), else a random LoRA."""
    if arg == "none" or (arg is None and base != "embedded"):
        return None, "none (base model)"
    if arg:
        return str(Path(arg).resolve()), f"`{arg}`"
    shipped = ROOT / "policies" / "adapters" / "optimizer"
    if (shipped / "adapter_config.json").is_file():
        return str(shipped), "shipped `policies/adapters/optimizer`"
    import torch
    from peft import LoraConfig, get_peft_model

    from policies.models import load_base

    d = Path(tempfile.mkdtemp(prefix="dara-bench-lora-"))
    model, _ = load_base("embedded", cache=False)
    torch.manual_seed(0)
    cfg = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                     init_lora_weights=False, task_type="CAUSAL_LM")
    get_peft_model(model, cfg).save_pretrained(str(d))
    del model
    return str(d), "random LoRA r=8 on q/v (no shipped optimizer adapter yet)"


def _count_tokens(tok, texts: list[str]) -> int:
    return sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)


def _parseable(texts, requests, encoding: str | None = None) -> float:
    from policies.prompts import decode

    ok = sum(decode(t, r, encoding).allocation is not None for t, r in zip(texts, requests))
    return ok / max(1, len(texts))


def _graph_row(args, adapter_dir, encoding, add, notes, straggler_wait: bool = True) -> None:
    """Optimizer decisions through the graph: --threads episodes at once, N decisions."""
    import dataclasses
    import json

    from graph.commands.episode_sources import batch_episodes
    from graph.commands.episodes import run_episodes
    from graph.context import Context
    from graph.policy_registry import REGISTRY
    from tools.envs import make_envs

    episodes = max(1, args.threads)
    rounds = max(1, args.n // episodes)
    env = make_envs(args.family, episodes, periods=args.periods, budget=float(args.periods), seed=1, noise=0.1)
    ctx = Context(reasoner="uniform", optimizer="llm", optimizer_adapter=adapter_dir or "none",
                  optimizer_encoding=encoding, max_rounds=rounds + 1, tolerance=0.0, seed=0, base=args.base)
    with tempfile.TemporaryDirectory(prefix="dara-dps-graph-") as tmp:
        # warm-up: one round of every episode (model load, first full-size batch)
        warm = dataclasses.replace(ctx, max_rounds=2)
        run_episodes(warm, batch_episodes(env), Path(tmp) / "warm", concurrency=episodes)
        chat = REGISTRY.get(ctx, "optimizer").chat_model
        coalescer = chat.coalescer
        coalescer.straggler_s = 2.0 if straggler_wait else 0.0
        sizes0, spans0 = len(coalescer.sizes), len(coalescer.spans)
        t0 = time.monotonic()
        run_episodes(ctx, batch_episodes(env), Path(tmp) / "timed", concurrency=episodes)
        secs = time.monotonic() - t0
        rows = [json.loads(line) for line in (Path(tmp) / "timed" / "episodes.jsonl").read_text().splitlines()]
    # every round after the first is an Optimizer decision, also one the decoder rejected (plan held, "fallback")
    decisions = [r for ep in rows for r in ep["rounds"] if r["round"] > 1]
    busy = sum(b - a for a, b in coalescer.spans[spans0:])
    texts = [r.get("text") or "" for r in decisions]
    label = f"graph, {episodes} episodes" + ("" if straggler_wait else ", window only")
    add(label, "coalesced", len(decisions), secs, texts, None,
        parse=sum(r.get("error") is None for r in decisions) / max(1, len(decisions)))
    notes.append(f"{label}: {episodes} episodes x {rounds} Optimizer rounds through run_episodes "
                 f"(batches of {coalescer.sizes[sizes0:]}, generating {busy:.1f} s of the {secs:.1f} s; "
                 f"round 1 uniform, not counted); "
                 f"{sum(r.get('error') is None for r in decisions)}/{len(decisions)} decisions parsed")


def _in_processes(argv: list[str], backends: list[str], times: int) -> tuple[list[dict], list[str]]:
    """Each backend row in a fresh process, ``times`` times, the order reversed every other
    time; returns the rows (labelled with their run) and notes, with each row's median."""
    base = []
    skip = False
    for a in argv:  # the parent's flags minus the ones each child gets its own value of
        if skip:
            skip = False
        elif a in ("--processes", "--backends", "--out", "--rows-json"):
            skip = True
        elif not a.startswith(("--processes=", "--backends=", "--out=", "--rows-json=")):
            base.append(a)
    rows: list[dict] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="dara-dps-proc-") as tmp:
        for k in range(times):
            for b in (backends if k % 2 == 0 else backends[::-1]):
                js, md = Path(tmp) / f"{k}-{b}.json", Path(tmp) / f"{k}-{b}.md"
                cmd = [sys.executable, str(Path(__file__).resolve()), *base, "--backends", b,
                       "--out", str(md), "--rows-json", str(js), "--processes", "0"]
                print(f"== run {k + 1}/{times}: {b} (fresh process)", flush=True)
                subprocess.run(cmd, check=True)
                got = json.loads(js.read_text())
                rows += [{**r, "name": r["backend"], "backend": f"{r['backend']} (run {k + 1})"} for r in got["rows"]]
                if k == 0:
                    notes += got["notes"]
    for name in dict.fromkeys(r["name"] for r in rows):  # each row's runs, in first-run order
        dps = [r["dps"] for r in rows if r["name"] == name]
        if len(dps) > 1:
            notes.append(f"{name}: median {statistics.median(dps):.3f} decisions/s over {len(dps)} fresh processes "
                         f"({', '.join(format(d, '.3f') for d in dps)})")
    notes.append(f"every row ran in a fresh process ({times} runs each, order alternating: "
                 f"{', '.join(backends)}, then reversed); notes above are from the first run; greedy "
                 f"texts are not compared between rows (they ran in different processes)")
    return rows, notes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=64, help="Optimizer prompts (default 64).")
    ap.add_argument("--batch-size", type=int, default=16, help="Prompts per generate call, local batched.")
    ap.add_argument("--batch1-limit", type=int, default=None,
                    help="Time local batch 1 on the first K prompts only (a rate; saves minutes).")
    ap.add_argument("--max-new-tokens", type=int, default=None,
                    help="Cap on new tokens (default: answer_token_cap(T, encoding)).")
    ap.add_argument("--periods", type=int, default=6, help="Slots T of the prompts (default 6).")
    ap.add_argument("--family", default="quadratic", help="Environment family of the prompts.")
    ap.add_argument("--encoding", default=None, help="Optimizer prompt encoding (default: the adapter's declared one, else the role's).")
    ap.add_argument("--adapter", default=None,
                    help="Optimizer adapter dir, or none (default: shipped, else random; none unless --base embedded).")
    ap.add_argument("--base", default="embedded", help="Base model: embedded, tiny-random or an HF dir.")
    ap.add_argument("--backends", default="local1,local,vllm",
                    help="Comma list of local1, local, local-plain, local-bf16p, vllm, threads, threads-bf16p, graph, graph-window-only.")
    ap.add_argument("--threads", type=int, default=8,
                    help="Concurrent single-decision callers for the threads configuration.")
    ap.add_argument("--vllm-dtype", default="float32")
    ap.add_argument("--processes", type=int, default=0,
                    help="Run each backend row in a fresh process, this many times, alternating the "
                         "rows' order (0 = every row in this process, one after another).")
    ap.add_argument("--rows-json", default=None, help=argparse.SUPPRESS)  # a --processes child's output
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "decisions_per_second.md"))
    args = ap.parse_args(argv)
    if args.processes < 0:
        ap.error(f"--processes must be >= 0, got {args.processes}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from policies.models import embedded_tokenizer
    from policies.adapter_meta import encoding_for
    from policies.prompts import answer_token_cap, encode, make_request
    from tools.envs import make_envs

    adapter_dir, adapter_desc = _adapter(args.adapter, args.base)  # the encoding is the one it declares
    encoding = encoding_for("optimizer", adapter_dir, args.encoding)
    if args.max_new_tokens is None:
        args.max_new_tokens = answer_token_cap(args.periods, encoding)
    env = make_envs(args.family, args.n, periods=args.periods, budget=float(args.periods), seed=0)
    requests = [make_request("optimizer", env.task(i)) for i in range(args.n)]
    prompts = [encode(r, encoding) for r in requests]
    tok = embedded_tokenizer()
    prompt_tokens = sum(
        len(tok(tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True),
                add_special_tokens=False)["input_ids"]) for p in prompts) / len(prompts)
    adapters = {"optimizer": adapter_dir} if adapter_dir else {}
    adapter = "optimizer" if adapter_dir else None
    wanted = [b.strip() for b in args.backends.split(",") if b.strip()]
    rows: list[dict] = []
    notes: list[str] = []
    texts_by: dict[str, list[str]] = {}
    if args.processes and not args.rows_json:  # a child (--rows-json) never spawns more
        rows, notes = _in_processes(argv if argv is not None else sys.argv[1:], wanted, args.processes)
        wanted = []  # every row ran in its own process

    def add(name, batch, n, secs, texts, reqs, parse=None):
        toks = _count_tokens(tok, texts)
        rows.append({"backend": name, "batch": batch, "n": n, "secs": secs, "dps": n / secs,
                     "tps": toks / secs, "parse": _parseable(texts, reqs, encoding) if parse is None else parse})
        print(f"{name:>14} batch={batch:<4} {n} prompts in {secs:7.1f} s -> {n / secs:6.3f} decisions/s "
              f"({toks / secs:6.1f} tok/s)", flush=True)

    if "vllm" in wanted:  # first, and closed before the local runs (no CPU sharing)
        from policies.backends.vllm_backend import VLLMEngine

        t0 = time.monotonic()
        eng = VLLMEngine(args.base, adapters, dtype=args.vllm_dtype).start()
        notes.append(f"vLLM offline engine start-up: {time.monotonic() - t0:.0f} s (not counted), "
                     f"dtype {args.vllm_dtype}, vllm {eng.info.get('vllm')}")
        try:
            t0 = time.monotonic()
            out = eng.generate(prompts, adapter=adapter, max_new_tokens=args.max_new_tokens)
            secs = time.monotonic() - t0
        finally:
            eng.close()
        texts = [o["text"] for o in out]
        texts_by["vllm"] = texts
        add("vllm (offline)", args.n, args.n, secs, texts, requests)

    if {"local1", "local", "local-plain", "local-bf16p"} & set(wanted):
        from policies.backends.local import LocalChatModel

        t0 = time.monotonic()
        local = LocalChatModel(base=args.base, adapters=adapters,
                               max_new_tokens=args.max_new_tokens, coalesce=False, batch_size=args.batch_size,
                               bf16_prefill=False)
        notes.append(f"local model + adapter load: {time.monotonic() - t0:.0f} s (not counted), fp32")
        # every row below warms up with one full-size batch of its own settings first: the
        # first full-size batch of a process (and of a thread, and of bf16) pays one-off costs
        def batched(name: str, label: str) -> None:
            local.generate_texts(prompts[:args.batch_size], adapter=adapter)  # this variant's warm-up
            t0 = time.monotonic()
            texts_by[name] = local.generate_texts(prompts, adapter=adapter)
            add(label, args.batch_size, args.n, time.monotonic() - t0, texts_by[name], requests)

        if "local-plain" in wanted:  # what batched generation did before sdpa_gqa and prefix prefill
            base_model = local.model.get_base_model() if hasattr(local.model, "get_base_model") else local.model
            attn = base_model.config._attn_implementation
            base_model.set_attn_implementation("sdpa")
            local.share_prefix = False
            try:
                batched("local-plain", "local plain")
            finally:
                base_model.set_attn_implementation(attn)
                local.share_prefix = True
            notes.append(f"local plain = transformers' sdpa attention, every row prefilled whole "
                         f"(the batched path before `{attn}` and prefix prefill)")
        if "local-bf16p" in wanted:  # the prompt under bf16 autocast, the decode in fp32
            local.bf16_prefill = True
            try:
                batched("local-bf16p", "local, bf16 prefill")
            finally:
                local.bf16_prefill = False
        if "local1" in wanted:
            k = min(args.n, args.batch1_limit or args.n)
            t0 = time.monotonic()
            texts = [local.generate_texts([p], adapter=adapter)[0] for p in prompts[:k]]
            add("local", 1, k, time.monotonic() - t0, texts, requests[:k])
            texts_by["local1"] = texts
            if k < args.n:
                notes.append(f"local batch 1 timed on the first {k} of {args.n} prompts (a rate)")
        if "local" in wanted:
            batched("local", "local")

    if {"threads", "threads-bf16p"} & set(wanted):
        from concurrent.futures import ThreadPoolExecutor

        from policies import make_policy

        policy = make_policy("llm", "optimizer", backend="local", base=args.base,
                             adapter=adapter_dir or "none", encoding=encoding, max_new_tokens=args.max_new_tokens,
                             batch_size=args.batch_size)
        policy.propose(requests[:1])  # warm-up (model load, constrained-decoding tables)
        chat = policy.chat_model
        for name in [w for w in ("threads", "threads-bf16p") if w in wanted]:
            chat.bf16_prefill = name == "threads-bf16p"
            # warm-up as the batched rows get: one full-size wave through the coalescer's
            # worker thread (its first full-size batch pays the same one-off costs)
            with ThreadPoolExecutor(args.batch_size) as pool:
                list(pool.map(lambda r: policy.propose([r]), requests[:args.batch_size]))
            calls0 = chat.generate_calls
            t0 = time.monotonic()
            with ThreadPoolExecutor(args.threads) as pool:
                decisions = list(pool.map(lambda r: policy.propose([r])[0], requests))
            secs = time.monotonic() - t0
            texts = [d.text for d in decisions]
            texts_by[name] = texts
            add(f"local, {args.threads} threads" + (", bf16 prefill" if chat.bf16_prefill else ""),
                "coalesced", args.n, secs, texts, requests)
            notes.append(f"{name}: {args.n} single-decision calls from {args.threads} threads through "
                         f"LLMPolicy (constrained answer format) ran as {chat.generate_calls - calls0} "
                         f"batched generate calls")
        chat.bf16_prefill = False
    for name in [w for w in ("graph", "graph-window-only") if w in wanted]:
        _graph_row(args, adapter_dir, encoding, add, notes, straggler_wait=name == "graph")
    if "threads" in texts_by and "threads-bf16p" in texts_by:
        same = sum(a == b for a, b in zip(texts_by["threads"], texts_by["threads-bf16p"]))
        notes.append(f"greedy texts identical between threads (fp32) and threads bf16 prefill: {same}/{args.n}")

    if "local-plain" in texts_by and "local" in texts_by:
        same = sum(a == b for a, b in zip(texts_by["local-plain"], texts_by["local"]))
        notes.append(f"greedy texts identical between local plain and local batched: {same}/{args.n}")
    if "local-bf16p" in texts_by and "local" in texts_by:
        same = sum(a == b for a, b in zip(texts_by["local-bf16p"], texts_by["local"]))
        notes.append(f"greedy texts identical between local (fp32) and local bf16 prefill: {same}/{args.n}")
    if "vllm" in texts_by and "local" in texts_by:
        same = sum(a == b for a, b in zip(texts_by["vllm"], texts_by["local"]))
        notes.append(f"greedy texts identical between local batched and vllm: {same}/{args.n}")

    b1 = [r["dps"] for r in rows if r.get("name", r["backend"]) == "local" and r["batch"] == 1]
    ref = statistics.median(b1) if b1 else None  # the batch-1 rate (median over --processes runs)
    try:
        import vllm  # noqa: F401

        vv = vllm.__version__
    except Exception:  # noqa: BLE001
        vv = "not installed"
    import torch
    import transformers

    if args.rows_json:  # a --processes child: its rows go back to the parent
        Path(args.rows_json).write_text(json.dumps({"rows": rows, "notes": notes}))
        return 0
    load = os.getloadavg()
    lines = [
        f"# Decisions per second — Optimizer, base model {args.base}",
        "",
        f"{args.n} Optimizer prompts ({args.family}, T={args.periods}, {encoding} encoding, "
        f"~{prompt_tokens:.0f} prompt tokens), "
        f"greedy, max {args.max_new_tokens} new tokens, stop at `</answer>`. Adapter: {adapter_desc}.",
        "",
        "| backend | batch | prompts | wall s | decisions/s | tokens/s | x local b1 | parseable |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = f"{r['dps'] / ref:.1f}x" if ref else "-"
        lines.append(f"| {r['backend']} | {r['batch']} | {r['n']} | {r['secs']:.1f} | {r['dps']:.3f} | "
                     f"{r['tps']:.1f} | {ratio} | {r['parse']:.0%} |")
    lines += ["", *[f"- {n}" for n in notes],
              f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, load average at the end "
              f"{load[0]:.1f} (shared box: other jobs ran at the same time), torch {torch.__version__}, "
              f"transformers {transformers.__version__}, vllm {vv}",
              f"- command: `python benchmarks/decisions_per_second.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
              ""]
    md = "\n".join(lines)
    print("\n" + md)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(md)
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
