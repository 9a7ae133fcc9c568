"""The recorder: what a cluster did, as pandas DataFrames.

`ck.record(app)` captures Celery events and samples queue depths and the memory and CPU use of workers (`recorder`,
`samplers`); stopping it gives a `Recording` (`recording`), whose frames are built from the raw events alone
(`frames`, over `events`), so `recording.save(path)` and `load_recording(path)` rebuild the same frames offline.
"""
from .events import Event, EventType
from .recorder import Recorder, record
from .recording import Recording, load_recording

__all__ = ["Event", "EventType", "Recorder", "Recording", "load_recording", "record"]
