"""Chapter 00 exercise: write a task module a worker can run."""
from __future__ import annotations

from celery import Task

from ..app import CourseCelery
from ..evidence import ending
from ..exercise import Exercise, Incorrect, budget, hidden_pairs, send


class FirstTask(Exercise):
    id = "00.first_task"
    title = "Write a task and run it on a worker"
    module = "ex00_first"
    functions = ("multiply",)
    praise = "Correct: a worker imported your module and ran multiply in a pool process, on inputs of the check's own."

    def app_of(self, mod):
        app = super().app_of(mod)
        if not isinstance(app, CourseCelery):
            raise Incorrect("ex00_first.py needs `app = ck.make_app('ex00_first')`, so the worker and this "
                            "notebook share the course's broker")
        return app

    def run(self, s, observed):
        task = s.mod.multiply
        if not isinstance(task, Task):
            raise Incorrect("multiply is a plain function: decorate it with @app.task so a worker can run it")
        s.consume()
        sent, endings = {}, {}
        for args in hidden_pairs(3, shown=((6, 7), (-3, 5))):
            sent[args] = send(task, args, s.source)
        for args, result in sent.items():
            endings[args] = ending(result, budget(6))  # a product takes milliseconds; 6 s allows a busy machine
            observed.append(f"multiply{args} {endings[args].describe()}")
            if endings[args].state != "SUCCESS":
                break  # the rest would wait as long for nothing
        runs = s.runs([r.id for r in sent.values()])
        return {"sent": sent, "endings": endings, "runs": runs, "source": s.source}

    def judge(self, seen, observed):
        for args, end in seen["endings"].items():
            where = seen["source"].where(end.line(seen["source"].path))
            assert end.state != "FAILURE", (f"multiply{args} raised {end.error} on the worker: {end.message}"
                                            + (f", at {where}" if where else ""))
            assert end.state == "SUCCESS", f"multiply{args} {end.describe()}: the worker never finished it"
            x, y = args
            assert end.value == x * y, f"multiply({x}, {y}) returned {end.value!r}; expected {x * y}"
        for args, result in seen["sent"].items():
            runs = seen["runs"][result.id]
            assert len(runs) == 1, f"multiply{args} ran {len(runs)} times on the check's worker; expected once"
            assert runs[0]["in_pool"], (f"multiply{args} ran in pid {runs[0]['pid']}, not in one of the check "
                                        "worker's pool processes")


first_task = FirstTask()
