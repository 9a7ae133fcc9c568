"""Runs chapter 06's kill lab (coursekit.killlab.lab) a number of rounds, each with Celery's defaults and then with the
right settings, and prints one JSON line per run: what the ledger and the storm saw. tests/test_lost_tasks.py runs it
in a process of its own, on a private redis-server, so that the keys and processes it leaves can be counted."""
from __future__ import annotations

import json
import sys

from coursekit import killlab
from coursekit.labs.losing import app

RUNS = (("defaults", {}, 1.0), ("right", killlab.RIGHT, 8.0))


def main(rounds: int) -> None:
    for n in range(rounds):
        for label, config, patience in RUNS:
            run = killlab.lab(label, config, 200, patience_s=patience)
            storm = run.storm
            starts = killlab.started(run.ledger.name).counts()
            print(json.dumps({"round": n + 1, "settings": label, "done": storm.tally["done"],
                              "lost": len(storm.tally["lost"]),
                              "in_transit": killlab.vanished(app, storm.tally["lost"], run.sent, run.ledger), "duplicated": storm.tally["duplicated"],
                              "starts_of_duplicated": {k: starts[k] for k in storm.tally["duplicated"]},
                              "kills": [k.kind for k in storm.kills], "problems": storm.problems + storm.skipped,
                              "seconds": round(storm.ended - storm.began, 1)}), flush=True)
            # the defaults' dead worker held messages in `unacked`: gone before the next run's short timeout finds them
            killlab.clean(app, run)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
