"""The ``dara`` command-line front ends that drive the DARA graph (``graph/``).

``cli`` dispatches to ``run`` (batch episodes), ``bench`` (methods compared per round),
``allocate`` (one real task) and ``demo``. Their shared parts each have one home:
``context_flags`` (flags generated from :class:`graph.context.Context`), ``episodes``
(running episodes durably: :func:`graph.commands.episodes.run_episodes`),
``episode_sources`` (which episodes), ``episode_log`` (the ``episodes.jsonl`` file),
``summaries`` (per-round statistics, tables and plots of ``run`` and ``bench``),
``bench_numeric`` and ``bench_llm`` (the two kinds of benchmark rows).
"""
