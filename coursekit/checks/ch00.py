"""Chapter 00 exercise: write a task module a worker can run."""
from __future__ import annotations

from celery import Task

from .. import get, record
from ..app import CourseCelery
from ..errors import ResultError
from ..exercise import Exercise, Incorrect, budget, check_worker


class FirstTask(Exercise):
    id = "00.first_task"
    title = "Write a task and run it on a worker"
    module = "ex00_first"
    functions = ("multiply",)
    praise = "Correct: a worker imported your module and ran multiply in a pool process."

    def run(self, mod, observed):
        app, task = getattr(mod, "app", None), getattr(mod, "multiply", None)
        if not isinstance(app, CourseCelery):
            raise Incorrect("ex00_first.py needs `app = ck.make_app('ex00_first')`, so the worker and this "
                            "notebook share the course's broker")
        if not isinstance(task, Task):
            raise Incorrect("multiply is a plain function: decorate it with @app.task so a worker can run it")
        results = {}
        with record(app) as recorder, check_worker(mod.__name__, cwd=self.folder.parent) as worker:
            for args in ((6, 7), (-3, 5)):
                try:
                    results[args] = get(task.delay(*args), timeout=budget(10))
                except ResultError as exc:
                    raise Incorrect(exc.problem) from None
                except Exception as exc:  # the task raised on the worker
                    raise Incorrect(f"multiply{args} raised {type(exc).__name__} on the worker: {exc}") from None
            node = worker.nodename
        runs = recorder.recording.runs
        for args, value in results.items():
            observed.append(f"multiply.delay{args} -> {value!r}")
        observed.append(f"{len(runs)} run(s) on {sorted(set(runs.node))}")
        return {"results": results, "runs": runs, "node": node}

    def judge(self, seen, observed):
        for (x, y), value in seen["results"].items():
            assert value == x * y, f"multiply({x}, {y}) returned {value!r}; expected {x * y}"
        assert len(seen["runs"]) == 2 and set(seen["runs"].node) == {seen["node"]}, \
            "the worker's events do not show two runs of multiply"


first_task = FirstTask()
