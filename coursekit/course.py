"""The course manifest, `course.toml`: chapters in order, read by the tests, the runner and the CLI."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from .errors import CourseError

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "course.toml"
FORMAT_VERSION = 1
NOTEBOOK_FOLDERS = ("notebooks", "solutions", "exercises")


@dataclass(frozen=True)
class Chapter:
    id: str
    slug: str
    title: str
    question: str = ""
    question_zh: str = ""
    services: tuple[str, ...] = ("redis",)
    minutes: int = 20
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def stem(self) -> str:
        return f"{self.id}_{self.slug}"

    def path(self, folder: str) -> Path:
        return ROOT / folder / f"{self.stem}.ipynb"


def chapters(manifest: Path = MANIFEST) -> list[Chapter]:
    try:
        data = tomllib.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CourseError(f"cannot read {manifest}: {exc}", fix="restore course.toml from git") from None
    if data.get("format_version") != FORMAT_VERSION:
        raise CourseError(f"{manifest} has format_version {data.get('format_version')!r}; "
                          f"this coursekit reads {FORMAT_VERSION}", fix="update coursekit: `pip install -e .`")
    known = {"id", "slug", "title", "question", "question_zh", "services", "minutes", "exercises"}
    out = []
    for entry in data.get("chapter", []):
        fields = {k: v for k, v in entry.items() if k in known and k != "exercises"}
        fields["services"] = tuple(fields.get("services", ("redis",)))
        out.append(Chapter(**fields, extra={k: v for k, v in entry.items() if k not in known}))
    return out


def notebooks(folders=NOTEBOOK_FOLDERS) -> list[tuple[Chapter, Path]]:
    """Every notebook of every chapter that exists, in course order."""
    return [(ch, ch.path(f)) for f in folders for ch in chapters() if ch.path(f).exists()]


def exercises(manifest: Path = MANIFEST) -> dict[str, dict]:
    """Exercise id -> its manifest entry (title, hints), in course order."""
    data = tomllib.loads(manifest.read_text(encoding="utf-8"))
    return {e["id"]: e for ch in data.get("chapter", []) for e in ch.get("exercises", [])}


def drill(manifest: Path = MANIFEST) -> dict:
    """course.toml's `[drill]` section, its `bank` and `notebook` made absolute paths."""
    data = tomllib.loads(manifest.read_text(encoding="utf-8")).get("drill")
    if not data:
        raise CourseError(f"{manifest} has no [drill] section", fix="restore course.toml from git")
    return {**data, "bank": ROOT / data["bank"], "notebook": ROOT / data["notebook"]}
