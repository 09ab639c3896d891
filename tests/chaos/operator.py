"""An operator at a terminal after an outage: ``rujukan ops --json dlq list --queue Q``, then ``rujukan ops dlq
replay Q <id>`` for each dead letter listed, as a shell loop over the listing would. The commands run through
``services.cli.main`` in this one process, so a few hundred replays do not each pay the two seconds a ``rujukan``
start takes; RUJUKAN_OPS_URL and RUJUKAN_OPS_TOKEN come from the environment, as for the real command. Prints how
many it replayed, last.

    python -m tests.chaos.operator notifier.notifications
"""

from __future__ import annotations

import contextlib
import io
import json
import sys

from services.cli import main

NOTE = "chaos: the agency's endpoint is back after the outage"


def rujukan_ops(*argv: str) -> tuple[int, str]:
    """``rujukan ops <argv>``: its exit code and what it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["ops", *argv])
    return code, printed.getvalue()


def replay_all(queue: str) -> int:
    code, listing = rujukan_ops("--json", "dlq", "list", "--queue", queue)
    if code != 0:
        print(f"rujukan ops dlq list exited {code}", file=sys.stderr)
        return code
    letters = json.loads(listing)
    replayed = 0
    for letter in letters:
        code, _ = rujukan_ops("dlq", "replay", queue, letter["message_id"], "--note", NOTE)
        if code == 0:
            replayed += 1
        else:
            print(f"rujukan ops dlq replay {queue} {letter['message_id']} exited {code}", file=sys.stderr)
    print(replayed)
    return 0 if replayed == len(letters) else 1


if __name__ == "__main__":
    sys.exit(replay_all(sys.argv[1]))
