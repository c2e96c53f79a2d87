"""Read a class's submissions the way an LMS hands them over.

Accepted layouts (a folder, or a ``.zip`` of any of them, possibly wrapped in
one extra top folder):

- ``<student>/<notebook>.ipynb`` (one folder per student; Moodle-style folder
  names such as ``Jane Doe_123456_assignsubmission_file_`` give ``Jane_Doe``),
- ``<student>/<assignment>/<notebook>.ipynb`` (nbgrader's own ``submitted/``),
- loose files ``<student>_<anything>.ipynb`` (Canvas-style downloads).

Every student found gets an :class:`Entry`, with the notebooks to grade and,
for anything odd, a one-line note for the report. Nothing here raises on bad
input: a broken submission is that student's problem, not the class's.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

#: Files and folders an archive tool or an OS adds, never a submission.
_JUNK = re.compile(r"^(__MACOSX|\.DS_Store|Thumbs\.db|\.ipynb_checkpoints|\..*)$")
_MOODLE = re.compile(r"^(?P<name>.+?)_(?P<number>\d+)_assignsubmission_\w*$")
#: Total uncompressed size accepted from one zip (a zip bomb stops here).
MAX_ZIP_BYTES = 512 * 1024**2
MAX_NOTEBOOK_BYTES = 20 * 1024**2


@dataclass
class Entry:
    """One student's submission as found on disk."""

    student: str
    original_name: str
    notebooks: dict[str, bytes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    problem: str = ""

    def digest(self, salt: str = "") -> str:
        h = hashlib.sha256(salt.encode("utf-8"))
        for name in sorted(self.notebooks):
            h.update(name.encode("utf-8") + b"\0" + hashlib.sha256(self.notebooks[name]).digest())
        h.update(self.problem.encode("utf-8"))
        return h.hexdigest()


def student_id(raw: str, with_number: bool = False) -> str:
    """A safe gradebook id: NFC, whitespace and path characters replaced by ``_``.

    Letters of any script stay (``José``, ``李雷``); nbgrader uses the id as a
    folder name and in URLs, so spaces, slashes and control characters go.
    A Moodle folder name gives the student's name, and with ``with_number``
    also the participant number Moodle put after it (two students of the
    same name stay two students).
    """
    text = unicodedata.normalize("NFC", raw).strip()
    match = _MOODLE.match(text)
    if match:
        text = match.group("name") + (f"_{match.group('number')}" if with_number else "")
    text = re.sub(r"[^\w.@+-]+", "_", text, flags=re.UNICODE).strip("._")
    return text[:100] or "unnamed"


def _notebook_match(filename: str, notebooks: list[str]) -> str | None:
    """The assignment notebook a submitted file name stands for, if any."""
    stem = Path(filename).stem
    if stem in notebooks:
        return stem
    # LMS decorations: "bn_math (1)", "bn_math-2", "Copy of bn_math", "bn_math_final".
    for name in notebooks:
        if re.search(rf"(^|[^a-z0-9]){re.escape(name.lower())}([^a-z0-9]|$)", stem.lower()):
            return name
    return None


def _read(path: Path) -> bytes | str:
    try:
        size = path.stat().st_size
    except OSError as error:
        return f"cannot read {path.name}: {error.strerror}"
    if size > MAX_NOTEBOOK_BYTES:
        return f"{path.name} is {size / 1024**2:.0f} MB, more than the {MAX_NOTEBOOK_BYTES // 1024**2} MB allowed"
    return path.read_bytes()


def check_notebook(data: bytes) -> str:
    """Why ``data`` is not a notebook we can grade, or ``""``."""
    if not data.strip():
        return "the notebook file is empty"
    try:
        content = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return f"the file is not a valid notebook (not JSON: {str(error)[:80]})"
    except RecursionError:
        return "the file is not a valid notebook (its JSON is nested too deeply)"
    if not isinstance(content, dict) or not isinstance(content.get("cells"), list):
        return "the file is not a valid notebook (no list of cells)"
    if content.get("nbformat") != 4:
        return f"the file is not a version 4 notebook (nbformat {content.get('nbformat')!r})"
    for number, cell in enumerate(content["cells"], start=1):
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            return f"the file is not a valid notebook (cell {number} is not a notebook cell)"
        source = cell.get("source", "")
        if not (isinstance(source, str) or isinstance(source, list) and all(isinstance(x, str) for x in source)):
            return f"the file is not a valid notebook (cell {number} has no text source)"
        if not isinstance(cell.get("metadata", {}), dict):
            return f"the file is not a valid notebook (cell {number} has malformed metadata)"
    return ""


def _visible(path: Path) -> bool:
    return not _JUNK.match(path.name)


def _unwrap(folder: Path) -> Path:
    """Skip single wrapper folders (``class.zip`` -> ``class/`` -> students).

    A lone folder is a wrapper when it holds folders or several notebooks; a
    lone folder with one notebook is a class of one student.
    """
    while True:
        children = [p for p in folder.iterdir() if _visible(p)]
        if len(children) == 1 and children[0].is_dir():
            inside = [p for p in children[0].iterdir() if _visible(p)]
            if any(p.is_dir() for p in inside) or sum(p.suffix == ".ipynb" for p in inside) > 1:
                folder = children[0]
                continue
        return folder


def _extract(archive: Path, into: Path) -> list[str]:
    """Unzip safely (no absolute paths, no ``..``, bounded size); return notes."""
    notes: list[str] = []
    total = 0
    with zipfile.ZipFile(archive) as zipped:
        for info in zipped.infolist():
            name = info.filename
            if info.flag_bits & 0x800 == 0:
                # Names not flagged UTF-8 were decoded as cp437; most tools meant UTF-8.
                try:
                    name = name.encode("cp437").decode("utf-8")
                except (UnicodeEncodeError, UnicodeDecodeError):
                    pass
            parts = [part for part in Path(name.replace("\\", "/")).parts if part not in ("", "/", ".")]
            if not parts or ".." in parts or info.is_dir():
                if ".." in parts:
                    notes.append(f"skipped {name!r} in the zip: its path leaves the archive")
                continue
            if any(_JUNK.match(part) for part in parts):
                continue
            total += info.file_size
            if total > MAX_ZIP_BYTES:
                notes.append(f"the zip holds more than {MAX_ZIP_BYTES // 1024**2} MB: the rest was skipped")
                break
            target = into.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zipped.open(info) as source, open(target, "wb") as sink:
                sink.write(source.read(MAX_NOTEBOOK_BYTES + 1))
    return notes


def collect(source: Path, assignment: str, notebooks: list[str]) -> tuple[list[Entry], list[str]]:
    """Every student's submission under ``source`` (a folder or a zip) and general notes."""
    notes: list[str] = []
    if not source.exists():
        raise FileNotFoundError(f"no such file or folder: {source}")
    with tempfile.TemporaryDirectory(prefix="bn-intake-") as scratch:
        if source.is_file():
            if not zipfile.is_zipfile(source):
                raise ValueError(f"{source} is neither a folder nor a zip archive")
            try:
                notes += _extract(source, Path(scratch))
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError) as error:
                raise ValueError(f"{source} is a damaged zip archive ({str(error)[:100]}); nothing was graded: "
                                 "export the submissions again") from None
            folder = Path(scratch)
        else:
            folder = source
        entries = _scan(_unwrap(folder), assignment, notebooks, notes)
    return entries, notes


def _scan(folder: Path, assignment: str, notebooks: list[str], notes: list[str]) -> list[Entry]:
    entries: dict[str, Entry] = {}
    # Folder names that would give one id to two students (two Moodle
    # participants of the same name) keep their participant number.
    raws = [p.name if p.is_dir() else p.stem.partition("_")[0] for p in folder.iterdir() if _visible(p)]
    by_id: dict[str, set[str]] = {}
    for raw in raws:
        by_id.setdefault(student_id(raw), set()).add(raw)
    shared = {raw for names in by_id.values() if len(names) > 1 for raw in names if _MOODLE.match(raw.strip())}

    def entry_for(raw: str) -> Entry:
        sid = student_id(raw, with_number=raw in shared)
        if sid not in entries:
            entries[sid] = Entry(sid, raw)
            if sid != raw:
                entries[sid].notes.append(f"recorded as student id {sid!r} (from {raw!r})")
        return entries[sid]

    for path in sorted(folder.iterdir()):
        if not _visible(path):
            continue
        if path.is_file():
            if path.suffix.lower() == ".zip":
                notes.append(f"skipped {path.name}: nested zip archives are not opened")
            elif path.suffix.lower() != ".ipynb":
                notes.append(f"skipped {path.name}: not a notebook")
            elif "_" not in path.stem:
                notes.append(f"skipped {path.name}: a loose notebook must be named <student>_<anything>.ipynb")
            else:
                raw, _, rest = path.stem.partition("_")
                _add(entry_for(raw), path, rest + ".ipynb", notebooks, loose=True)
            continue
        entry = entry_for(path.name)
        inner = path / assignment if (path / assignment).is_dir() else path
        files = sorted(p for p in inner.rglob("*.ipynb") if all(_visible(part) for part in
                                                              (Path(q) for q in p.relative_to(inner).parts)))
        if not files:
            entry.problem = entry.problem or "no notebook in the submission"
        for file in files:
            _add(entry, file, file.name, notebooks, loose=False)
    for entry in entries.values():
        if not entry.notebooks and not entry.problem:
            entry.problem = "no notebook of this assignment in the submission"
    return sorted(entries.values(), key=lambda e: e.student)


def _add(entry: Entry, path: Path, shown_name: str, notebooks: list[str], loose: bool) -> None:
    name = _notebook_match(shown_name, notebooks)
    if name is None and loose and len(notebooks) == 1:
        name = notebooks[0]
    if name is None:
        expected = ", ".join(f"{n}.ipynb" for n in notebooks)
        entry.notes.append(f"{path.name}: no notebook of that name in this assignment (expected {expected}); ignored")
        return
    if name in entry.notebooks:
        entry.notes.append(f"{path.name}: a second file for {name}.ipynb; ignored")
        return
    data = _read(path)
    if isinstance(data, str):
        entry.problem = data
        return
    problem = check_notebook(data)
    if problem:
        entry.problem = f"{path.name}: {problem}"
        return
    if Path(shown_name).stem != name:
        entry.notes.append(f"{path.name} graded as {name}.ipynb")
    entry.notebooks[name] = data
