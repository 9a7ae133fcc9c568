"""Chapter 14, the interview drill: a question bank (bank.py, drill/bank.toml), live experiments that settle each
answer on real workers (lab.py, experiments/), a drill session (session.py) driven from a terminal (terminal.py)
or a notebook (widget.py), results in the learner's progress (records.py) and a report (report.py)."""
