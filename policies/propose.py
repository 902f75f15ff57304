"""``dara propose``: the debugging view of one decision.

    dara propose --role reasoner|optimizer [--backend local|vllm|openai]
                 [--base embedded|tiny-random|DIR] [--adapter DIR|none]
                 [--encoding absolute|delta|delta-slope] --task task.json [--window-file window.json]
                 [--json out.json]

Writes ``{"allocation": [...] or null, "text": "<raw model text>", "error": null or
"<parse error>"}`` (to ``--json``, else stdout). The Reasoner sees the task's few-shot
history; the Optimizer sees the last ``--window`` records (default 3) of
``--window-file`` (a JSON list of records, or an object with ``window``/``history``),
else of the task's history. ``--adapter`` defaults to the shipped adapter for the role
when one exists (``none`` forces the plain base model). A parse error is a result, not a
failure: the exit code is 0; bad input files exit 2 with a message naming the problem.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from policies.prompts import DEFAULT_WINDOW, ENCODINGS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dara propose", description=__doc__.split("\n\n")[0])
    p.add_argument("--role", required=True, choices=["reasoner", "optimizer"], help="which agent decides")
    p.add_argument("--backend", default="local", choices=["local", "vllm", "openai"],
                   help="chat-model backend (default: local)")
    p.add_argument("--base", default="embedded",
                   help="base model: embedded (default), tiny-random, or an HF model directory")
    p.add_argument("--adapter", default=None,
                   help="LoRA adapter directory (default: the shipped adapter for the role; 'none' = base)")
    p.add_argument("--encoding", default=None, choices=list(ENCODINGS),
                   help="prompt/answer encoding (default: reasoner absolute, optimizer delta)")
    p.add_argument("--task", required=True, type=Path, help="task JSON file")
    p.add_argument("--window-file", type=Path, default=None,
                   help="optimizer window: JSON list of records (default: the task's history)")
    p.add_argument("--window", type=int, default=DEFAULT_WINDOW, help="optimizer window size w (default 3)")
    p.add_argument("--json", type=Path, default=None, help="output file (default: stdout)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="cap on generated tokens")
    p.add_argument("--temperature", type=float, default=None, help="0 = greedy (default)")
    p.add_argument("--seed", type=int, default=None, help="sampling seed")
    p.add_argument("--base-url", default=None, help="openai backend: server URL (e.g. http://127.0.0.1:8000/v1)")
    return p


def _read_window(path: Path):
    from tools.task import Record

    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SystemExit(f"dara propose: window file not found: {path}")
    except json.JSONDecodeError as e:
        raise SystemExit(f"dara propose: {path}: not valid JSON ({e})")
    if isinstance(data, dict):
        data = data.get("window", data.get("history"))
    if not isinstance(data, list):
        raise SystemExit(f"dara propose: {path}: expected a list of records or an object with 'window'")
    try:
        return [Record.model_validate(r) for r in data]
    except Exception as e:  # pydantic ValidationError: name the field
        raise SystemExit(f"dara propose: {path}: {e}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from policies import make_policy
    from policies.prompts import make_request
    from tools.task import Task

    try:
        task = Task.from_file(args.task)
    except (FileNotFoundError, ValueError) as e:
        print(f"dara propose: {e}", file=sys.stderr)
        return 2
    try:
        window = _read_window(args.window_file) if args.window_file else None
    except SystemExit as e:
        print(e, file=sys.stderr)
        return 2
    request = make_request(args.role, task, window, w=args.window)
    if args.role == "optimizer" and not request.window:
        print("dara propose: the optimizer needs at least one record (task history or --window-file)",
              file=sys.stderr)
        return 2
    kw = {k: v for k, v in {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature,
                            "seed": args.seed, "base_url": args.base_url}.items() if v is not None}
    policy = make_policy("llm", args.role, backend=args.backend, base=args.base,
                         adapter=args.adapter, encoding=args.encoding, **kw)
    d = policy.propose([request])[0]
    out = {"allocation": d.allocation, "text": d.text, "error": d.error}
    s = json.dumps(out, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(s + "\n")
    else:
        print(s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
