"""The ``dara`` command: a thin dispatcher.

Each subcommand lives in the module that owns it and is imported only when called, so
``dara bench`` with numeric policies never imports torch, and ``graph/`` never imports
``training/`` at module level.

Exit codes (every command): 0 done; 1 done, but some episodes failed outright (``run``);
2 bad input, reported in one line before any work (``tools.cli_errors``); 3 no new plan
(``allocate``: the model's answer could not be used and no ``--fallback`` was asked for).
"""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS = {
    "bench": ("graph.commands.bench", "compare policies per round on many environments"),
    "run": ("graph.commands.run", "scripted batch episodes through the DARA graph"),
    "allocate": ("graph.commands.allocate", "one real task: plan, reasoning, budget-tool report"),
    "propose": ("policies.propose", "one decision of one role (debugging view)"),
    "demo": ("graph.commands.demo", "the main job: DARA on the embedded model vs the baselines"),
    "train": ("training.cli", "SFT warm start and GRPO-Adaptive training of adapters"),
}

USAGE = "usage: dara <command> [options]\n\ncommands:\n" + "\n".join(
    f"  {name:<9} {help_}" for name, (_, help_) in SUBCOMMANDS.items()
) + "\n\nRun 'dara <command> --help' for a command's options."


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd not in SUBCOMMANDS:
        print(f"dara: error: unknown command {cmd!r}; choose one of {', '.join(SUBCOMMANDS)} "
              "(see dara --help)", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[cmd][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
