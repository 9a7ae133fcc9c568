"""Checkpoints: `coursekit jump NN` brings a late joiner to chapter NN in one command.

Every exercise module of the chapters before NN is written into the workspace as the solutions notebook writes
it, and those exercises are marked "given" in progress: the learner did not solve them, and the team table says
so. A module already in the workspace is kept: identical, it is left alone; different, it is renamed to
`<name>.py.bak-<time>` first, so a learner's own work is never lost to a jump.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CourseError


@dataclass
class Jump:
    chapter: str
    written: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    backups: list[tuple[Path, Path]] = field(default_factory=list)
    """(the module, the copy of the learner's version kept beside it)"""
    given: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"wrote {p}" for p in self.written] + [f"already there: {p}" for p in self.unchanged]
        out += [f"kept your version of {m.name} as {b.name}" for m, b in self.backups]
        out.append(f"marked {len(self.given)} exercise(s) as given: {', '.join(self.given)}" if self.given
                   else f"chapter {self.chapter} is the first: nothing to give")
        return out


def chapter_id(text: str) -> str:
    """'4', '04' or '04_priorities' -> '04', when course.toml has that chapter; else a clear error."""
    from .course import chapters

    known = [ch.id for ch in chapters()]
    raw = str(text).strip().split("_")[0]
    wanted = raw.zfill(2) if raw.isdigit() else raw
    if wanted not in known:
        raise CourseError(f"no chapter {text!r} in course.toml", fix=f"pick one of: {', '.join(known)}")
    return wanted


def _writable(workspace: Path) -> None:
    if workspace.exists() and not workspace.is_dir():
        raise CourseError(f"the workspace {workspace} is a file, not a folder",
                          fix="pass the folder your %%writefile cells write to with --workspace")
    try:
        workspace.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CourseError(f"cannot create the workspace {workspace}: {exc.strerror}",
                          fix="pass a folder you can write to with --workspace") from None
    try:  # a real write, not os.access: root passes every permission bit yet not a read-only file system
        tempfile.TemporaryFile(dir=workspace).close()
    except OSError as exc:
        raise CourseError(f"the workspace {workspace} is not writable ({exc.strerror})",
                          fix=f"make it yours (`chmod u+w {workspace}`) or pass another folder with --workspace") from None


def jump(chapter: str, workspace: Path) -> Jump:
    """Fill `workspace` with the answers of every exercise before `chapter` and mark them given."""
    from . import progress
    from .build import module_text
    from .checks import all_exercises
    from .course import chapters

    target = chapter_id(chapter)
    _writable(workspace)
    earlier = [ch for ch in chapters() if ch.id < target]
    known = all_exercises()
    done = Jump(target)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for ch in earlier:
        ids = [i for i in known if i.split(".")[0] == ch.id]
        for module in dict.fromkeys(known[i].module for i in ids):  # several exercises may share one module
            text, path = module_text(module, ch), workspace / f"{module}.py"
            if path.exists() and path.read_text(errors="replace") == text:
                done.unchanged.append(path)
                continue
            if path.exists():
                backup = path.with_name(f"{path.name}.bak-{stamp}")
                path.replace(backup)
                done.backups.append((path, backup))
            path.write_text(text)
            done.written.append(path)
        done.given += ids
    if done.given:
        progress.record_given(done.given, target)
    return done
