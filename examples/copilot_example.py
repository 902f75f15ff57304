"""DARA from Python, as a copilot would call it (numeric baselines: runs in seconds).

    python examples/copilot_example.py

1. one simulated episode through the graph (``run_episode``);
2. one plan for a real task (``plan``): the plan table's data, where it came from, why;
3. the same task with *live* feedback (``LiveSession``): apply each proposal, report the
   marginal ROI "observed" (here: read off the simulator), until the session is done;
4. the langchain-core tools a copilot agent can call directly.

Swap ``reasoner="llm", optimizer="llm"`` in to use the embedded model (slower on CPU);
then pass ``fallback="local-model"`` to get a numeric plan (``source``
``fallback:local-model``) instead of :class:`graph.api.NoPlanError` when the model's
answer cannot be used.
"""

from __future__ import annotations

from graph.api import LiveSession, NoPlanError, make_tools, plan, run_episode
from tools.envs import make_envs


def _money(xs) -> str:
    return "[" + ", ".join(f"{x:6.2f}" for x in xs) + "]"


def main() -> None:
    env = make_envs("hill", 1, periods=4, budget=100.0, seed=7)
    task = env.task(0)
    spec = {**env.spec, "index": 0}

    # 1. a whole simulated episode
    out = run_episode(task, env_spec=spec, reasoner="local-model", optimizer="gradient", max_rounds=5)
    print("simulated episode")
    for r in out["rounds"]:
        print(f"  round {r['round']} {r['source']:<9} {_money(r['allocation'])}  "
              f"regret {100 * r['metrics']['regret']:.3f}%")

    # 2. one plan for a real task (no simulator)
    try:
        result = plan(task, reasoner="local-model")
    except NoPlanError as e:  # the model's answer could not be used and no fallback= was given
        print(f"no plan: {e}")
    else:
        print("one plan")
        print(f"  plan {_money(result.plan)} (source {result.source})")
        print(f"  expected change in return {result.expected_uplift.value:+.2f}; {result.reason}")
        for flag in result.flags:
            print(f"  check ({flag.kind}): {flag.message}")

    # 3. live feedback: apply the proposal, report what was observed, repeat
    session = LiveSession(task, reasoner="local-model", optimizer="gradient", max_rounds=3)
    print("live episode")
    while not session.done:
        proposal = session.proposal
        print(f"  round {session.record['round']}: apply {_money(proposal)}")
        observed = env.mroi([proposal])[0].tolist()  # stands in for the real campaign
        session.observe(mroi=observed)
    print(f"  final plan {_money(session.allocation)} ({session.state['stop_reason']})")

    # 4. the tools
    tools = {t.name: t for t in make_tools(env)}
    fixed = tools["enforce_budget"].invoke({"proposal": [50, 50, 50, -5], "task": task.model_dump()})
    print("budget tool:", fixed["reasons"] if isinstance(fixed, dict) else fixed)


if __name__ == "__main__":
    main()
