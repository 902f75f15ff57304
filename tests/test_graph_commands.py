"""The command-line front ends' Context flags: generated from ``graph.context.Context``
with the documented names and defaults, reaching the context unchanged."""

from __future__ import annotations

from dataclasses import fields

import pytest

from graph.commands import allocate, bench, demo, run
from graph.commands.context_flags import context_from_args
from graph.context import Context

DEFAULTS = {f.name: f.default for f in fields(Context)}


def _flags(parser) -> dict[str, str]:
    return {opt: a.dest for a in parser._actions for opt in a.option_strings}


def test_run_flags_are_the_context_fields():
    p = run.build_parser()
    flags = _flags(p)
    for name in run.CONTEXT_FIELDS:
        flag = "--rounds" if name == "max_rounds" else "--" + name.replace("_", "-")
        assert flags[flag] == name
    args = p.parse_args(["--out", "x"])
    assert context_from_args(args, run.CONTEXT_FIELDS) == Context()
    assert "Sliding window w" in p.format_help()  # help text from the field's description
    args = p.parse_args(["--out", "x", "--max-rounds", "7", "--optimizer-encoding", "delta", "--temperature", "0.5",
                         "--reasoner-adapter", "none", "--window", "2", "--seed", "4"])
    ctx = context_from_args(args, run.CONTEXT_FIELDS)
    assert (ctx.max_rounds, ctx.optimizer_encoding, ctx.temperature, ctx.reasoner_adapter, ctx.window, ctx.seed) == (
        7, "delta", 0.5, "none", 2, 4)


def test_allocate_gains_encoding_and_temperature():
    p = allocate.build_parser()
    args = p.parse_args(["--task", "t.json", "--reasoner-encoding", "absolute", "--optimizer-encoding",
                         "delta-slope", "--temperature", "0.3", "--approve", "--backend", "openai"])
    ctx = context_from_args(args, allocate.CONTEXT_FIELDS, max_rounds=2, feedback="live")
    assert (ctx.reasoner_encoding, ctx.optimizer_encoding, ctx.temperature) == ("absolute", "delta-slope", 0.3)
    assert ctx.approval is True and ctx.backend == "openai" and ctx.max_rounds == 2
    assert p.parse_args(["--task", "t.json"]).approval is False


def test_bench_and_demo_keep_their_defaults():
    args = bench.build_parser().parse_args([])
    ctx = context_from_args(args, bench.CONTEXT_FIELDS)
    assert (ctx.max_rounds, ctx.seed, ctx.window, ctx.backend, ctx.base) == (10, 7, 3, "local", "embedded")
    args = demo.build_parser().parse_args([])
    assert (args.max_rounds, args.seed, args.backend, args.episodes) == (10, 7, "local", 20)


@pytest.mark.parametrize("argv, message", [
    (["--window", "x"], "argument --window: window must be an integer, got 'x'"),
    (["--backend", "tpu"], "argument --backend: invalid choice: 'tpu'"),
    (["--optimizer-encoding", "rle"], "argument --optimizer-encoding: invalid choice: 'rle'"),
    (["--temperature", "warm"], "argument --temperature: temperature must be a number, got 'warm'"),
])
def test_bad_flag_values_name_the_flag(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        run.build_parser().parse_args(["--out", "x", *argv])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_context_errors_after_parsing_are_reported(tmp_path, capsys):
    assert run.main(["--out", str(tmp_path / "o"), "--window", "0", "--quiet"]) == 2
    assert "--window 0: must be an integer >= 1" in capsys.readouterr().err  # the flag, not the field
    assert bench.main(["--envs", "5", "--rounds", "0"]) == 2
    assert "--rounds 0: must be an integer >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("command, argv", [
    (bench, "--family quadratic --envs 2000 --rounds 10 --seed 7 --policies uniform,heuristic,gradient,local-model "
            "--json out.json --plot out.png"),
    (bench, "--policies dara --reasoner-adapter R --optimizer-adapter O --reasoner-encoding delta "
            "--optimizer-encoding delta-slope --backend vllm --base embedded --llm-out d --concurrency 4"),
    (allocate, "--task task.json --live --rounds 5 --approve"),
    (run, "--family quadratic --episodes 50 --rounds 10 --seed 7 --out runs/q50 --resume"),
    (run, "--tasks tasks.jsonl --reasoner llm --optimizer local-model --out runs/mine"),
    (run, "--family quadratic --episodes 50 --rounds 10 --seed 7 --out runs/q50s --server http://127.0.0.1:2024"),
    (run, "--family quadratic --episodes 200 --rounds 10 --out runs/q200 --server http://127.0.0.1:2024"),
    (run, "--backend openai --base-url http://gpu1:8000/v1,http://gpu2:8000/v1 --out o --server http://h:2024"),
])
def test_documented_commands_parse(command, argv):
    command.build_parser().parse_args(argv.split())
