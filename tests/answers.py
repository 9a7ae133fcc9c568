"""Learners' modules for the check tests, built from the solutions notebooks (the single source)."""
from __future__ import annotations

from pathlib import Path

from coursekit.build import module_text as solution_module  # workspace/<module>.py as the solutions write it


def swap(source: str, old: str, new: str) -> str:
    """`source` with `old` replaced; fails loudly when the solution no longer holds `old`."""
    assert old in source, f"the solution no longer contains {old!r}: update the test"
    return source.replace(old, new)


def attempt(ws: Path, exercise, source: str):
    """Write the module as a learner's %%writefile cell would, and check the exercise."""
    (ws / f"{exercise.module}.py").write_text(source)
    return exercise.check(ws)


S00, S01, S02 = (solution_module(m) for m in ("ex00_first", "ex01_calling", "ex02_retries"))
S03_ROUTING, S03_PREFETCH, S03_BURST = (solution_module(m) for m in ("ex03_routing", "ex03_prefetch", "ex03_burst"))
S04U, S04R, S04T = (solution_module(m) for m in ("ex04_urgent", "ex04_rabbitmq", "ex04_tiers"))
S05J, S05F, S05O = (solution_module(m) for m in ("ex05_json", "ex05_file", "ex05_once"))
S06N, S06F, S06X = (solution_module(m) for m in ("ex06_no_loss", "ex06_find", "ex06_fail_fast"))
S07P, S07E, S07W = (solution_module(m) for m in ("ex07_payment", "ex07_export", "ex07_pool"))
S08M, S08R, S08O = (solution_module(m) for m in ("ex08_recycle", "ex08_results", "ex08_oom"))
S09I, S09C, S09L = (solution_module(m) for m in ("ex09_io", "ex09_cpu", "ex09_limit"))
S11E, S11O, S11C = (solution_module(m) for m in ("ex11_expires", "ex11_once", "ex11_crontab"))
S12C, S12H, S12E = (solution_module(m) for m in ("ex12_chain", "ex12_chord", "ex12_errback"))
S10B, S10P, S10C = (solution_module(m) for m in ("ex10_backlog", "ex10_publish", "ex10_comeback"))
S13C, S13D, S13R, S13V = (solution_module(m) for m in ("ex13_commit", "ex13_deploy", "ex13_ratelimit", "ex13_revoke"))
