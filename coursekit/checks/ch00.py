"""Chapter 00 exercise: write a task module a worker can run."""
from __future__ import annotations

from ..app import CourseCelery
from ..exercise import Exercise, hidden_pairs
from ..outcomes import Incorrect
from ..trials import task_named


class FirstTask(Exercise):
    id = "00.first_task"
    module = "ex00_first"
    functions = ("multiply",)

    def app_of(self, mod):
        app = super().app_of(mod)
        if not isinstance(app, CourseCelery):
            raise Incorrect("ex00_first.py needs `app = ck.make_app('ex00_first')`, so the worker and this "
                            "notebook share the course's broker")
        return app

    def run(self, s, observed):
        task = task_named(s.mod, "multiply")
        # a product takes milliseconds; 6 s allows a busy machine
        trials = s.run_on_worker(task, [(args, 6) for args in hidden_pairs(3, shown=((6, 7), (-3, 5)))])
        observed += [f"{trial.call} {trial.end.describe()}" for trial in trials]
        return {"trials": trials, "source": s.source}

    def judge(self, seen, observed):
        source = seen["source"]
        for trial in seen["trials"]:
            end = trial.end
            where = source.where(end.line(source.path))
            assert end.state != "FAILURE", (f"{trial.call} raised {end.error} on the worker: {end.message}"
                                            + (f", at {where}" if where else ""))
            assert end.state == "SUCCESS", f"{trial.call} {end.describe()}: the worker never finished it"
            x, y = trial.args
            assert end.value == x * y, f"multiply({x}, {y}) returned {end.value!r}; expected {x * y}"
        for trial in seen["trials"]:
            assert len(trial.runs) == 1, (f"{trial.call} ran {len(trial.runs)} times on the check's worker; "
                                          "expected once")
            assert trial.runs[0]["in_pool"], (f"{trial.call} ran in pid {trial.runs[0]['pid']}, not in one of the "
                                              "check worker's pool processes")


first_task = FirstTask()
