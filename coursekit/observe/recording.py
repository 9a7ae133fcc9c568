"""`Recording`: the raw observations of one recording (events, queue, memory and CPU samples), the frames built from
them, and saving and loading, so that a saved recording replays identically (`ck.load_recording`)."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import frames
from .events import Event

FORMAT = 1


@dataclass
class Recording:
    """Raw observations; every DataFrame is derived from them, so a saved recording replays identically."""

    started_at: float
    events: list[Event] = field(default_factory=list)
    queue_samples: list[tuple] = field(default_factory=list)
    list_samples: list[tuple] = field(default_factory=list)
    """On Redis, the messages in each priority list of each queue (`priority_lists`); empty on RabbitMQ, and in
    recordings saved before the lists were sampled."""
    memory_samples: list[tuple] = field(default_factory=list)
    cpu_samples: list[tuple] = field(default_factory=list)
    """Each worker's CPU use between two samples (the `cpu` frame); empty in recordings saved before it was sampled."""
    priorities: dict[str, int | None] = field(default_factory=dict)
    published: dict[str, float] = field(default_factory=dict)
    """When this process published each task. Celery emits task-sent only AFTER publishing, so a worker can
    receive a message before the task-sent timestamp; `tasks.sent` uses this publish time when it has one."""
    gaps: list[list[float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dropped: int = 0
    duration: float = 0.0

    def __post_init__(self):
        # a loaded recording holds plain dicts and lists: give them the shapes a live one has
        self.events = [e if isinstance(e, Event) else Event(e) for e in self.events]
        self.queue_samples = [tuple(row) for row in self.queue_samples]
        self.list_samples = [tuple(row) for row in self.list_samples]
        self.memory_samples = [tuple(row) for row in self.memory_samples]
        self.cpu_samples = [tuple(row) for row in self.cpu_samples]

    # -- frames ----------------------------------------------------------------------------------------
    # Each frame reads a copy of its list: in a live recording a sampler thread appends while pandas reads, and
    # pandas took 276 rows where it had counted 281 (a ValueError in lesson 03 on CI).
    @property
    def events_df(self) -> pd.DataFrame:
        return frames.events_frame(list(self.events))

    @property
    def tasks(self) -> pd.DataFrame:
        """One row per task id: when it was sent, received, started and finished, where, and how it ended."""
        return frames.tasks_frame(list(self.events), self.priorities, self.published)

    @property
    def runs(self) -> pd.DataFrame:
        """One row per execution attempt: a retry or a redelivery is a new run of the same task id."""
        return frames.runs_frame(list(self.events))

    @property
    def queues(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.queue_samples), columns=frames.QUEUE_COLUMNS)

    @property
    def priority_lists(self) -> pd.DataFrame:
        """On Redis, one row per sample of each priority list: its queue, its priority step (the lowest priority
        it holds: 0, 3, 6, 9 by default) and how many messages it held. `queues.depth` is their sum."""
        return pd.DataFrame(list(self.list_samples), columns=frames.LIST_COLUMNS)

    @property
    def memory(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.memory_samples), columns=frames.MEMORY_COLUMNS)

    @property
    def cpu(self) -> pd.DataFrame:
        """One row per sample of each worker on this machine: `cpu_s`, the CPU time its processes (main and pool
        children) used since the previous sample, and `cores`, that over the seconds between the two: 1.0 is one
        core busy."""
        return pd.DataFrame(list(self.cpu_samples), columns=frames.CPU_COLUMNS)

    def state_changes(self) -> list[tuple[float, str, str]]:
        """(t, task id, state after) for every event that moves a task, in time order."""
        return frames.state_changes(self.events)

    def settled(self, task_ids) -> bool:
        """True when every run of these tasks has ended and each has its final event, as far as the events tell."""
        return frames.settled(self.events, task_ids)

    def max_overlap(self) -> int:
        """The most runs in progress at the same instant."""
        return frames.max_overlap(self.runs, self.duration)

    def size_bytes(self) -> int:
        """Memory the raw observations hold, each object counted once (shared strings too)."""
        seen: set[int] = set()

        def size(obj) -> int:
            if id(obj) in seen:
                return 0
            seen.add(id(obj))
            return sys.getsizeof(obj)

        total = 0
        for container in (self.events, self.queue_samples, self.list_samples, self.memory_samples, self.cpu_samples,
                          self.priorities, self.published):
            total += size(container)
            for item in container:
                total += size(item)
                parts = item if isinstance(item, tuple) else [item.get(k) for k in Event.__slots__] \
                    if isinstance(item, Event) else [container[item]]
                total += sum(size(part) for part in parts)
        return total

    # -- save and replay -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        data = {"format": FORMAT, **{k: getattr(self, k) for k in self.__dataclass_fields__}}
        data["events"] = [e.as_dict() for e in self.events]
        path.write_text(json.dumps(data, default=str))
        return path

    def __repr__(self) -> str:
        return (f"<Recording {self.duration:.1f} s: {len(self.events)} events, {len(self.tasks)} tasks, "
                f"{len(self.queue_samples)} queue samples, {len(self.memory_samples)} memory samples, "
                f"{len(self.cpu_samples)} CPU samples>")


def load_recording(path: str | Path) -> Recording:
    data = json.loads(Path(path).read_text())
    if data.pop("format", None) != FORMAT:
        raise ValueError(f"{path} is not a coursekit recording of format {FORMAT}")
    return Recording(**data)
