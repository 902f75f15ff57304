"""benchmarks/decisions_per_second.py runs its graph row end to end (tiny random model)."""

import pytest

from tests.conftest import load_benchmark


@pytest.mark.slow
def test_graph_row_counts_optimizer_decisions_through_the_graph(tmp_path):
    dps = load_benchmark("decisions_per_second")
    out = tmp_path / "dps.md"
    assert dps.main(["--base", "tiny-random", "--adapter", "none", "--n", "12", "--threads", "4",
                     "--backends", "graph", "--encoding", "absolute", "--out", str(out)]) == 0
    table = out.read_text()
    row = next(line for line in table.splitlines() if line.startswith("| graph, 4 episodes"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # 4 episodes x 3 Optimizer rounds; a random model's absolute answers always parse (constrained decoding),
    # its signed ones are mostly rejected as not_a_change, which still counts as a decision
    assert cells[2] == "12" and cells[-1] == "100%"
    assert "4 episodes x 3 Optimizer rounds" in table


@pytest.mark.slow
def test_processes_runs_every_row_in_fresh_processes_alternating(tmp_path):
    dps = load_benchmark("decisions_per_second")
    out = tmp_path / "dps.md"
    assert dps.main(["--base", "tiny-random", "--adapter", "none", "--n", "4", "--threads", "2",
                     "--batch-size", "2", "--backends", "local,graph", "--encoding", "absolute",
                     "--processes", "2", "--out", str(out)]) == 0
    table = out.read_text()
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ") and "(run" in line]
    # A B then B A: each row twice, each in its own process
    assert rows == ["local (run 1)", "graph, 2 episodes (run 1)", "graph, 2 episodes (run 2)", "local (run 2)"]
    assert "local: median" in table and "graph, 2 episodes: median" in table
