"""The DARA state machine (LangGraph), served by ``langgraph dev`` via ``langgraph.json``.

::

    START -> setup -> reason -> enforce_budget -> self_check -> [review] -> query_env -> finish -> END
                                     ^                                          |
                                     +--------------- optimize <----------------+  (more rounds)

No checkpointer is attached here: the LangGraph server supplies persistence for Studio;
``dara run`` compiles its own copy with SQLite (:func:`build_graph`).

The server serves :func:`studio_graph` (``langgraph.json``), which returns the same
compiled ``graph`` after checking the run's context: the server drops context keys its
schema does not list before the graph sees them, so a misspelled key (``max_round``)
would otherwise be ignored without a word.
"""

from __future__ import annotations

from typing import Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from graph import nodes
from graph.context import Context, get_context, unknown_fields_error
from graph.state import InputState, State


def route_after_check(state: State, runtime: Runtime[Context]) -> Literal["review", "query_env"]:
    """Pause for a human review when ``context.approval`` is on."""
    return "review" if get_context(runtime).approval else "query_env"


def route_after_feedback(state: State, runtime: Runtime[Context]) -> Literal["optimize", "finish"]:
    """Stop at ``max_rounds`` rounds or once MROI dispersion is under the tolerance."""
    return "finish" if nodes.stop_reason(state, get_context(runtime)) else "optimize"


def make_builder() -> StateGraph:
    builder = StateGraph(State, input_schema=InputState, output_schema=State, context_schema=Context)
    builder.add_node("setup", nodes.setup)
    builder.add_node("reason", nodes.reason)
    builder.add_node("enforce_budget", nodes.enforce_budget)
    builder.add_node("self_check", nodes.self_check)
    builder.add_node("review", nodes.review)
    builder.add_node("query_env", nodes.query_env)
    builder.add_node("optimize", nodes.optimize)
    builder.add_node("finish", nodes.finish)
    builder.add_edge(START, "setup")
    builder.add_edge("setup", "reason")
    builder.add_edge("reason", "enforce_budget")
    builder.add_edge("enforce_budget", "self_check")
    builder.add_conditional_edges("self_check", route_after_check)
    builder.add_edge("review", "query_env")
    builder.add_conditional_edges("query_env", route_after_feedback)
    builder.add_edge("optimize", "enforce_budget")
    builder.add_edge("finish", END)
    return builder


def build_graph(checkpointer=None, name: str = "DARA"):
    """A compiled DARA graph, optionally with a checkpointer (needed for interrupts)."""
    return make_builder().compile(checkpointer=checkpointer, name=name)


builder = make_builder()
graph = builder.compile(name="DARA")


def studio_graph(runtime: "ServerRuntime"):  # noqa: F821 - resolved by the LangGraph server
    """The graph for the LangGraph server, rejecting unknown context keys of a run.

    The server calls this with its runtime, whose ``context`` is the run's context as sent
    (before the server filters it by the schema); reading the schemas it has none."""
    context = getattr(runtime, "context", None)
    if isinstance(context, dict):
        error = unknown_fields_error(context)
        if error is not None:
            raise error
    return graph
