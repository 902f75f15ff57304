"""``dara propose``: the debugging view of one decision.

    dara propose --role reasoner|optimizer [--backend local|vllm|openai]
                 [--base embedded|tiny-random|DIR] [--adapter DIR|none]
                 [--encoding absolute|delta|delta-slope|delta-hint|delta-hint-last] --task task.json [--window-file window.json]
                 [--json out.json]

Writes ``{"allocation": [...] or null, "text": "<raw model text>", "error": null or
"<parse error>"}`` (to ``--json``, else stdout). The Reasoner sees the task's few-shot
history; the Optimizer sees the last ``--window`` records (default 3) of
``--window-file`` (a JSON list of records, or an object with ``window``/``history``),
else of the task's history. ``--adapter`` defaults to the shipped adapter for the role
when one exists (``none`` forces the plain base model). A parse error is a result, not a
failure: the exit code is 0. Bad input (task or window file, an ``--adapter`` or
``--base`` that does not exist, no server for ``--backend openai``, an unwritable
``--json``) exits 2 with one line naming the flag, before any model is loaded.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from policies.prompts import DEFAULT_WINDOW, ENCODINGS
from tools.cli_errors import OneLineParser, check_number, check_output_file, report

PROG = "dara propose"


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
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
    from tools.task import TaskError, load_task

    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"--window-file {path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"--window-file {path}: cannot be read ({type(e).__name__})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"--window-file {path}: not valid JSON (line {e.lineno}, column {e.colno})") from None
    if isinstance(data, dict):
        data = data.get("window", data.get("history"))
    if not isinstance(data, list):
        raise ValueError(f"--window-file {path}: expected a list of records or an object with 'window'")
    if not data:
        return []
    T = len(data[0].get("allocation") or []) if isinstance(data[0], dict) else 0
    try:  # validated as a task's history: one-line errors naming record and field
        task = load_task({"budget": 1, "periods": max(T, 1), "history": data}, check_units=False)
    except TaskError as e:
        raise ValueError(f"--window-file {path}: {e}") from None
    return list(task.history)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        request = _prepare(args)
    except (ValueError, OSError) as e:  # InputError, TaskError: one line, nothing loaded
        return report(PROG, e)
    from policies import make_policy

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


def _prepare(args):
    """Every check that needs no model: outputs, numbers, task, window, adapter, base, server."""
    from policies.preflight import check_model_settings
    from policies.prompts import make_request
    from tools.task import Task

    check_output_file("--json", args.json)
    check_number("--window", args.window, minimum=1, integer=True)
    check_number("--max-new-tokens", args.max_new_tokens, minimum=1, integer=True)
    check_number("--temperature", args.temperature, minimum=0)
    check_number("--seed", args.seed, minimum=0, integer=True)
    task = Task.from_file(args.task)
    window = _read_window(args.window_file) if args.window_file else None
    if window is not None and window and len(window[0].allocation) != task.periods:
        raise ValueError(f"--window-file {args.window_file}: records have {len(window[0].allocation)} slots "
                         f"but the task has periods = {task.periods}")
    request = make_request(args.role, task, window, w=args.window)
    if args.role == "optimizer" and not request.window:
        raise ValueError("--role optimizer: needs at least one record (task history or --window-file)")
    check_model_settings(args.backend, args.base, {args.role: ("--adapter", args.adapter)},
                         base_url=args.base_url, base_url_flag="--backend openai" if not args.base_url
                         else f"--base-url {args.base_url}")
    return request


if __name__ == "__main__":
    raise SystemExit(main())
