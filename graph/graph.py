"""The DARA state machine (LangGraph), served by ``langgraph dev`` via ``langgraph.json``.

::

    START -> setup -> reason -> enforce_budget -> [review] -> query_env -> finish -> END
                                     ^                              |
                                     +--------- optimize <----------+  (more rounds, not converged)

No checkpointer is attached here: the LangGraph server supplies persistence for Studio;
``dara run`` compiles its own copy with SQLite (:func:`build_graph`).
"""

from __future__ import annotations

from typing import Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from graph import nodes
from graph.context import Context, get_context
from graph.state import InputState, State


def route_after_budget(state: State, runtime: Runtime[Context]) -> Literal["review", "query_env"]:
    """Pause for a human review when ``context.approval`` is on."""
    return "review" if get_context(runtime).approval else "query_env"


def route_after_feedback(state: State, runtime: Runtime[Context]) -> Literal["optimize", "finish"]:
    """Stop at ``max_rounds`` rounds or once MROI dispersion is under the tolerance."""
    return "finish" if nodes.stop_reason(state, get_context(runtime)) else "optimize"


def make_builder() -> StateGraph:
    builder = StateGraph(State, input_schema=InputState, context_schema=Context)
    builder.add_node("setup", nodes.setup)
    builder.add_node("reason", nodes.reason)
    builder.add_node("enforce_budget", nodes.enforce_budget)
    builder.add_node("review", nodes.review)
    builder.add_node("query_env", nodes.query_env)
    builder.add_node("optimize", nodes.optimize)
    builder.add_node("finish", nodes.finish)
    builder.add_edge(START, "setup")
    builder.add_edge("setup", "reason")
    builder.add_edge("reason", "enforce_budget")
    builder.add_conditional_edges("enforce_budget", route_after_budget)
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
