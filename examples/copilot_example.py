"""DARA from Python, as a copilot would call it (numeric baselines: runs in seconds).

    python examples/copilot_example.py

1. one simulated episode through the graph (``run_episode``);
2. the same task with *live* feedback: the graph pauses with the plan to apply and is
   resumed with the marginal ROI "observed" (here: read off the simulator);
3. the langchain-core tools a copilot agent can call directly.
Swap ``reasoner="llm", optimizer="llm"`` in to use the embedded model (slower on CPU).
"""

from __future__ import annotations

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from graph.api import build_graph, make_tools, run_episode
from tools.envs import make_envs


def main() -> None:
    env = make_envs("hill", 1, periods=4, budget=100.0, seed=7)
    task = env.task(0)
    spec = {**env.spec, "index": 0}

    # 1. a whole simulated episode
    out = run_episode(task, env_spec=spec, reasoner="local-model", optimizer="gradient", max_rounds=5)
    print("simulated episode")
    for r in out["rounds"]:
        alloc = ", ".join(f"{x:6.2f}" for x in r["allocation"])
        print(f"  round {r['round']} {r['source']:<9} [{alloc}]  regret {100 * r['metrics']['regret']:.3f}%")

    # 2. live feedback: pause, apply, resume with what was observed
    g = build_graph(checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "campaign-42"}}
    ctx = {"reasoner": "local-model", "optimizer": "gradient", "feedback": "live", "max_rounds": 3}
    result = g.invoke({"task": task.model_dump()}, cfg, context=ctx)
    print("live episode")
    while "__interrupt__" in result:
        request = result["__interrupt__"][0].value
        observed = env.mroi([request["apply"]])[0].tolist()  # stands in for the real campaign
        print(f"  round {request['round']}: apply {[round(x, 2) for x in request['apply']]}")
        result = g.invoke(Command(resume={"mroi": observed}), cfg, context=ctx)
    print(f"  final plan {[round(x, 2) for x in result['allocation']]} ({result['stop_reason']})")

    # 3. the tools
    tools = {t.name: t for t in make_tools(env)}
    fixed = tools["enforce_budget"].invoke({"proposal": [50, 50, 50, -5], "task": task.model_dump()})
    print("budget tool:", fixed["reasons"] if isinstance(fixed, dict) else fixed)


if __name__ == "__main__":
    main()
