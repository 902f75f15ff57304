"""LangGraph Studio / server: the config validates; ``langgraph dev`` serves the graph.

The integration test starts ``langgraph dev`` on a free loopback port without a browser
or reloader, reads the assistant's input/output/context schemas, creates a thread with
``langgraph-sdk``, runs an episode with baseline policies (no model needed), streams its
updates, reads the final state, checks that a misspelled context key fails the run with
the known keys, and shuts the server down cleanly.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import langgraph_dev, require

REPO = Path(__file__).resolve().parents[1]


def test_langgraph_json_validates():
    cfg_mod = require("langgraph_cli.config")
    cfg = cfg_mod.validate_config_file(REPO / "langgraph.json")
    assert cfg["graphs"] == {"dara": "./graph/graph.py:studio_graph"}
    assert "." in cfg["dependencies"]


def test_exported_graph_has_no_checkpointer():
    from graph.graph import graph, studio_graph

    assert graph.checkpointer is None and graph.name == "DARA"
    assert studio_graph(None) is graph


def test_graph_publishes_input_and_output_schemas():
    """Regression: ``typing.TypedDict`` state could not be read by pydantic on Python < 3.12,
    so the server published no input or output schema."""
    from graph.graph import graph

    inp = graph.get_input_jsonschema()
    assert set(inp["properties"]) == {"task", "env"}
    assert {"budget", "periods", "history", "max_change"} <= set(inp["$defs"]["Task"]["properties"])
    out = graph.get_output_jsonschema()
    assert {"rounds", "allocation", "pending", "mroi_estimate"} <= set(out["properties"])
    assert {"flags", "no_plan", "source", "error", "replaced"} <= set(out["$defs"]["Round"]["properties"])
    assert graph.get_context_jsonschema()["additionalProperties"] is False


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_langgraph_dev_serves_an_episode(tmp_path):
    sdk = require("langgraph_sdk")
    with langgraph_dev(tmp_path / "server.log") as url:
        client = sdk.get_sync_client(url=url)
        (assistant,) = client.assistants.search(graph_id="dara")
        schemas = client.assistants.get_schemas(assistant["assistant_id"])
        inp = schemas["input_schema"]
        assert inp is not None and set(inp["properties"]) == {"task", "env"}
        assert {"budget", "periods", "history"} <= set(inp["$defs"]["Task"]["properties"])
        assert "rounds" in schemas["output_schema"]["properties"]
        assert "on_flag" in schemas["context_schema"]["properties"]

        thread = client.threads.create()
        context = {"reasoner": "local-model", "optimizer": "gradient", "max_rounds": 3}
        nodes_seen = []
        for chunk in client.runs.stream(thread["thread_id"], "dara",
                                        input={"env": {"family": "quadratic", "seed": 4}},
                                        context=context, stream_mode="updates"):
            if chunk.event == "updates" and isinstance(chunk.data, dict):
                nodes_seen.extend(chunk.data.keys())
            assert chunk.event != "error", chunk.data
        assert nodes_seen[:5] == ["setup", "reason", "enforce_budget", "self_check", "query_env"]
        assert nodes_seen.count("optimize") == 2 and nodes_seen[-1] == "finish"
        state = client.threads.get_state(thread["thread_id"])
        values = state["values"]
        assert values["done"] and values["stop_reason"] == "max_rounds"
        assert [r["source"] for r in values["rounds"]] == ["reasoner", "optimizer", "optimizer"]
        assert all(abs(sum(r["allocation"]) - 6.0) < 1e-9 for r in values["rounds"])
        assert all(isinstance(r["flags"], list) and r["no_plan"] is False for r in values["rounds"])

        # A misspelled context key fails the run, naming the known keys (the server itself
        # would drop it silently before the graph sees the context).
        bad = client.threads.create()
        run = client.runs.create(bad["thread_id"], "dara", input={"env": {"family": "quadratic", "seed": 4}},
                                 context={"reasoner": "local-model", "max_round": 3})
        client.runs.join(bad["thread_id"], run["run_id"])
        run = client.runs.get(bad["thread_id"], run["run_id"])
        assert run["status"] == "error", run
        assert "unknown context field(s) max_round; known:" in (tmp_path / "server.log").read_text()
