"""`phoenix <group> ...`: dispatches to the module that owns each group, imported only when used,
so the production groups never load the local runtime and vice versa."""
from __future__ import annotations

import importlib
import sys

# group -> (module with `main(argv) -> int`, one-line help)
GROUPS: dict[str, tuple[str, str]] = {
    "workflow": ("localcloud.workflows.cli", "run a workflow file in the local engine"),
    "dev": ("devstack.cli", "the local stack: start it, make tokens, grant tokens"),
    "demo": ("devstack.demo", "start the local stack and run the demo creations"),
    "ops": ("phoenix.ops", "operator commands: list, trace, replay, reconcile, audit, cancel"),
    "console": ("phoenix.console.cli", "the operator console in a browser, on 127.0.0.1"),
    "cost": ("devstack.costs.cli", "what a creation costs and how long it takes on Google Cloud (estimates)"),
}


def usage() -> str:
    lines = ["usage: phoenix <command> [args...]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in GROUPS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    group, rest = argv[0], argv[1:]
    if group not in GROUPS:
        print(f"phoenix: unknown command {group!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(GROUPS[group][0])
    try:
        return int(module.main(rest) or 0)
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
