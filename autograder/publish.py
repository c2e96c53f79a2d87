"""The student edition: the course as students get it, with nothing that grades.

This repository is the instructor's (private) course directory: next to the
book and the released notebooks it holds the reference solutions
(``solutions/``), the hidden tests (``autograder/checks/``) and the catalog of
wrong implementations (``tests/catalog/``). :func:`publish` writes the *student
edition* into a folder of its own, a complete repository that a course pushes
to a public remote and whose ``make book`` builds the site the course publishes:

- the pages of ``_toc.yml``, except the private ones (:data:`PRIVATE_PAGES`),
  each replaced by a public page of the same name, since other pages link it;
- every chapter (a MyST Markdown notebook) also as ``book/<chapter>.ipynb``,
  converted with jupytext. sphinx-book-theme points a page's launch buttons at
  ``<page>.ipynb`` when that file exists next to the page's source, so the
  site built from the edition opens the notebooks, the only files Colab opens;
- the rest of the book's folder as git tracks it (files the chapters include
  or import, static files, bibliographies), the released notebooks
  (``exercises/``) and the files the site configuration names elsewhere;
  files git does not track stay out, with a warning;
- ``_config.yml`` with the repository button and the launch buttons on the
  student repository (``student_repository`` in the instructor's
  ``_config.yml``), never on the instructor's;
- a README, a Makefile (``make book``), requirements with the course's pins
  (CPU PyTorch), a Binder environment and a GitHub Pages workflow, from the
  templates in ``autograder/student_edition/``;
- ``.student-edition``, the list of the files written: it marks the folder as
  an edition, and the next publication into it replaces exactly those files
  (``.git``, a licence or a ``CNAME`` that the course added stay).
"""

from __future__ import annotations

import copy
import hashlib
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Mapping

import yaml

#: The templates of the edition's own files (README, Makefile, workflow, ...).
TEMPLATES = Path(__file__).resolve().parent / "student_edition"

#: The file that lists an edition's files; a folder holding it is an edition.
MANIFEST = ".student-edition"

#: The setting of the instructor's ``_config.yml`` that names the student repository.
STUDENT_REPOSITORY_SETTING = "student_repository"

#: Pages of the instructor's site that stay private, each with the template of
#: the public page that takes its place (other pages link it by name).
PRIVATE_PAGES: Mapping[str, str] = {"book/instructors": "book/instructors.md"}

#: The book's sources: public, but for PRIVATE_PAGES; shipped whole (the
#: snippets chapters include, the modules they import, static files).
BOOK_DIRECTORY = "book"

#: The released notebooks: public by definition, shipped whole.
RELEASE_DIRECTORY = "exercises"

#: Paths that never go into an edition, whatever the configuration names: what
#: grades, and what grading produces.
GRADING_PATHS: tuple[str, ...] = (
    "solutions", "autograder", "tests", "nbgrader_config.py", "gradebook.db",
    "submitted", "autograded", "feedback", "grading", "release",
)

#: The Sphinx extension that gives the instructor's own site the edition's
#: launch links (autograder/launch_links.py); the edition does not need it.
LAUNCH_LINKS_EXTENSION = "autograder.launch_links"

#: Python of the edition's site build and of its Binder environment.
PYTHON_VERSION = "3.11"

#: PyTorch's index of CPU-only builds: the default Linux build brings several GB
#: of CUDA libraries that a site build or a Binder session never uses.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"

#: Packages of the instructor's requirements.txt that the edition installs,
#: at the course's versions: the site build, and what the notebooks import.
SITE_PACKAGES: tuple[str, ...] = (
    "jupyter-book", "sphinx", "myst-nb", "jupyter-cache", "sphinx-book-theme",
    "sphinxcontrib-bibtex", "sphinx-mathjax-offline", "jupytext",
    "nbformat", "nbclient", "ipykernel",
)
NOTEBOOK_PACKAGES: tuple[str, ...] = ("torch", "numpy", "matplotlib", "scikit-learn")

_GITHUB_REPOSITORY = re.compile(r"^https://github\.com/(?P<owner>[A-Za-z0-9-]+)/(?P<name>[A-Za-z0-9._-]+?)(?:\.git)?/?$")
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)(?:\[[^\]]*\])?\s*==\s*(?P<version>[^\s;]+)")
_PLACEHOLDER = re.compile(r"@([a-z_]+)@")
_PAGE_SUFFIXES = (".md", ".ipynb")
_JUNK_PARTS = frozenset({"__pycache__", ".ipynb_checkpoints", ".DS_Store"})


class PublishError(Exception):
    """A problem with ``publish``'s input, reported in one line."""


@dataclass(frozen=True)
class StudentRepository:
    """The public repository that holds the student edition (on GitHub: Colab opens only GitHub files)."""

    url: str
    branch: str
    path_to_book: str

    @property
    def owner(self) -> str:
        return self._parts()["owner"]

    @property
    def name(self) -> str:
        return self._parts()["name"]

    @property
    def site_url(self) -> str:
        """Where GitHub Pages serves the repository's site."""
        return f"https://{self.owner.lower()}.github.io/{self.name}/"

    def _parts(self) -> dict[str, str]:
        match = _GITHUB_REPOSITORY.match(self.url)
        assert match, self.url  # checked by student_repository()
        return match.groupdict()


@dataclass(frozen=True)
class Edition:
    """What :func:`publish` wrote."""

    dest: Path
    files: tuple[str, ...]                 # POSIX paths relative to dest, sorted
    repository: StudentRepository | None   # None: not configured, launch buttons off
    warnings: tuple[str, ...]


MISSING_REPOSITORY_WARNING = (f"warning: {STUDENT_REPOSITORY_SETTING}.url is not set in _config.yml: the student "
                              "edition is written with its launch buttons and repository button off")


def student_repository(config: Mapping[str, Any]) -> StudentRepository | None:
    """The student repository named by the instructor's ``_config.yml``; None when its url is not set."""
    section = config.get(STUDENT_REPOSITORY_SETTING) or {}
    if not isinstance(section, Mapping):
        raise PublishError(f"{STUDENT_REPOSITORY_SETTING} in _config.yml must be a mapping with url and branch")
    url = str(section.get("url") or "").strip()
    if not url:
        return None
    if not _GITHUB_REPOSITORY.match(url):
        raise PublishError(f"{STUDENT_REPOSITORY_SETTING}.url must be a GitHub repository, "
                           f"https://github.com/<owner>/<name>: got {url!r}")
    return StudentRepository(url=url.rstrip("/").removesuffix(".git"),
                             branch=str(section.get("branch") or "main"),
                             path_to_book=str(section.get("path_to_book") or "").strip("/"))


def toc_pages(toc: Mapping[str, Any]) -> list[str]:
    """Every document of a ``_toc.yml``, root first, without suffix."""
    if "root" not in toc:
        raise PublishError("_toc.yml names no root page")
    pages = [_strip_suffix(toc["root"])]

    def walk(entries: Iterable[Mapping[str, Any]] | None) -> None:
        for entry in entries or ():
            if "file" in entry:
                pages.append(_strip_suffix(entry["file"]))
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts") or ():
        walk(part.get("chapters"))
    return pages


def page_source(root: Path, page: str) -> str:
    """The source file of a page of the book, relative to ``root``."""
    for suffix in _PAGE_SUFFIXES:
        if (root / f"{page}{suffix}").is_file():
            return f"{page}{suffix}"
    raise PublishError(f"_toc.yml names {page}, which has no {' or '.join(_PAGE_SUFFIXES)} file")


def is_markdown_notebook(path: Path) -> bool:
    """A MyST Markdown notebook: a ``.md`` page whose front matter names a kernel
    (sphinx-book-theme gives exactly these pages launch buttons)."""
    if path.suffix != ".md":
        return False
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        return False
    front, _, _ = text[4:].partition("\n---")
    metadata = yaml.safe_load(front)
    return isinstance(metadata, dict) and "kernelspec" in metadata


def chapter_notebook(markdown: Path) -> str:
    """The ``.ipynb`` text of a MyST Markdown chapter: its cells, no outputs.

    Cell ids come from the cells' contents rather than at random, so that
    publishing an unchanged chapter again writes the same file.
    """
    import jupytext
    import nbformat

    notebook = jupytext.read(markdown, fmt="md:myst")
    notebook.metadata.pop("jupytext", None)  # the pairing is the instructor repository's business
    seen: dict[str, int] = {}
    for cell in notebook.cells:
        digest = hashlib.sha1(f"{cell.cell_type}\n{cell.source}".encode()).hexdigest()[:8]
        count = seen.get(digest, 0)
        seen[digest] = count + 1
        cell["id"] = digest if count == 0 else f"{digest}-{count}"
    nbformat.validate(notebook)
    return nbformat.writes(notebook) + "\n"


def edition_config(config: Mapping[str, Any], repository: StudentRepository | None,
                   notebooks: Iterable[str]) -> dict[str, Any]:
    """The edition's ``_config.yml``: the instructor's, with its buttons on the student repository.

    ``notebooks`` (the generated chapter notebooks) are excluded from the
    build: each page is built from its ``.md`` as in the instructor's site, and
    Sphinx would otherwise find two sources for one page.
    """
    edition = copy.deepcopy(dict(config))
    edition.pop(STUDENT_REPOSITORY_SETTING, None)
    html = edition["html"] = dict(edition.get("html") or {})
    if repository is not None:
        edition["repository"] = {"url": repository.url, "path_to_book": repository.path_to_book,
                                 "branch": repository.branch}
    else:
        edition.pop("repository", None)
        edition.pop("launch_buttons", None)
        for button in ("use_repository_button", "use_issues_button", "use_edit_page_button"):
            html[button] = False
    sphinx = edition["sphinx"] = dict(edition.get("sphinx") or {})
    extensions = dict(sphinx.get("local_extensions") or {})
    extensions.pop(LAUNCH_LINKS_EXTENSION, None)
    if extensions:
        sphinx["local_extensions"] = extensions
    else:
        sphinx.pop("local_extensions", None)
    sphinx_config = sphinx["config"] = dict(sphinx.get("config") or {})
    excluded = list(sphinx_config.get("exclude_patterns") or [])
    sphinx_config["exclude_patterns"] = excluded + [n for n in notebooks if n not in excluded]
    return edition


def course_pins(requirements: str) -> dict[str, str]:
    """``name==version`` of every pinned package of a requirements file, by normalized name."""
    pins = {}
    for line in requirements.splitlines():
        match = _PIN.match(line.split("#", 1)[0].strip())
        if match:
            pins[_normalize(match["name"])] = f"{match['name']}=={match['version']}"
    return pins


def edition_requirements(pins: Mapping[str, str]) -> tuple[str, str]:
    """The edition's ``requirements.txt`` (site build) and ``binder/requirements.txt`` (notebooks)."""
    def pinned(names: Iterable[str]) -> list[str]:
        missing = [name for name in names if _normalize(name) not in pins]
        if missing:
            raise PublishError(f"requirements.txt pins no version of {', '.join(missing)}")
        return [pins[_normalize(name)] for name in names]

    generated = "# Written by the instructor repository's `make publish`: the course's versions."
    site = "\n".join([
        generated, "# `make book` and the GitHub Pages workflow install it.", "",
        "# PyTorch's CPU-only builds: on Linux pip takes torch X+cpu from this index (a",
        "# later version than PyPI's X, which brings several GB of CUDA libraries).",
        f"--extra-index-url {TORCH_CPU_INDEX}", "",
        "# The site: Jupyter Book 1 (Sphinx), with MathJax served from the built site.",
        *pinned(SITE_PACKAGES), "", "# What the chapters import.", *pinned(NOTEBOOK_PACKAGES), ""])
    # Binder runs on Linux: name the CPU build outright, so that a version the
    # CPU index lacks fails the build instead of pulling the CUDA one.
    notebook_pins = [pin + "+cpu" if _normalize(pin.split("==")[0]) == "torch" else pin
                     for pin in pinned(NOTEBOOK_PACKAGES)]
    binder = "\n".join([
        generated, "# Binder's environment for the launch buttons: what the notebooks import.", "",
        "# PyTorch's CPU-only build (the default one brings several GB of CUDA libraries).",
        f"--extra-index-url {TORCH_CPU_INDEX}", "", *notebook_pins, ""])
    return site, binder


def render(template: str, values: Mapping[str, str]) -> str:
    """A template with each ``@name@`` replaced by ``values[name]``."""
    def value(match: re.Match[str]) -> str:
        if match[1] not in values:
            raise KeyError(f"template placeholder @{match[1]}@ has no value")
        return values[match[1]]

    return _PLACEHOLDER.sub(value, template)


def edition_files(root: Path, config: Mapping[str, Any], repository: StudentRepository | None) -> dict[str, bytes]:
    """Every file of the student edition, by POSIX path relative to the edition."""
    root = root.resolve()
    toc_text = (root / "_toc.yml").read_text(encoding="utf-8")
    pages = toc_pages(_parse_yaml(toc_text, "_toc.yml"))
    tracked = _tracked_files(root)
    files: dict[str, bytes] = {}

    copied: set[str] = set()
    public_pages = [page for page in pages if page not in PRIVATE_PAGES]
    copied.update(page_source(root, page) for page in public_pages)
    copied.update(_named_files(root, config))
    for folder in (*_named_folders(config), BOOK_DIRECTORY, RELEASE_DIRECTORY):
        copied.update(_files_under(root, folder, tracked))
    copied -= {f"{page}{suffix}" for page in PRIVATE_PAGES for suffix in _PAGE_SUFFIXES}
    for path in sorted(copied):
        if _is_grading_path(path):
            raise PublishError(f"the site configuration names {path}, which grades: it stays out of the student edition")
        files[path] = (root / path).read_bytes()

    for page, template in PRIVATE_PAGES.items():
        if page in pages:
            files[f"{page}.md"] = (TEMPLATES / template).read_bytes()

    notebooks = []
    for page in public_pages:
        source = root / page_source(root, page)
        if is_markdown_notebook(source):
            notebooks.append(f"{page}.ipynb")
            files[f"{page}.ipynb"] = chapter_notebook(source).encode()

    files["_toc.yml"] = toc_text.encode()
    header = ("# Jupyter Book configuration of the course's student edition, written by the\n"
              "# instructor repository's `make publish` from its _config.yml: change it there.\n")
    files["_config.yml"] = (header + yaml.safe_dump(edition_config(config, repository, notebooks),
                                                    sort_keys=False, allow_unicode=True, width=100)).encode()

    pins = course_pins((root / "requirements.txt").read_text(encoding="utf-8"))
    site_requirements, binder_requirements = edition_requirements(pins)
    files["requirements.txt"] = site_requirements.encode()
    files["binder/requirements.txt"] = binder_requirements.encode()

    values = {
        "title": str(config.get("title") or "The course"),
        "python_version": PYTHON_VERSION,
        "branch": repository.branch if repository else "main",
        "repository_url": repository.url if repository else
        f"not set yet ({STUDENT_REPOSITORY_SETTING}.url in the instructor repository's _config.yml)",
        "site_url": repository.site_url if repository else "not published yet",
    }
    for template, target in (("README.md", "README.md"), ("Makefile", "Makefile"), ("gitignore", ".gitignore"),
                             ("binder/runtime.txt", "binder/runtime.txt"),
                             ("workflows/pages.yml", ".github/workflows/pages.yml")):
        files[target] = render((TEMPLATES / template).read_text(encoding="utf-8"), values).encode()
    return files


def publish(root: Path, dest: Path) -> Edition:
    """Write the student edition of the course in ``root`` into ``dest``.

    ``dest`` is an empty or missing folder, a clone of an empty repository
    (only ``.git``), or a previous edition, whose files are replaced.
    """
    root, dest = root.resolve(), dest.resolve()
    _check_destination(root, dest)
    config = _parse_yaml((root / "_config.yml").read_text(encoding="utf-8"), "_config.yml")
    repository = student_repository(config)
    files = edition_files(root, config, repository)  # everything is read before dest changes
    previous = _previous_files(dest)
    for path in previous:
        (dest / path).unlink(missing_ok=True)
    _remove_empty_folders(dest, previous)
    for path, content in files.items():
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    (dest / MANIFEST).write_text(_manifest(files), encoding="utf-8")
    warnings = [] if repository else [MISSING_REPOSITORY_WARNING]
    untracked = _untracked_files(root, (BOOK_DIRECTORY, RELEASE_DIRECTORY, *_named_folders(config)))
    if untracked:
        warnings.append(f"warning: git does not track {', '.join(untracked)}: left out of the student edition "
                        "(git add what belongs to the course)")
    return Edition(dest=dest, files=tuple(sorted(files)), repository=repository, warnings=tuple(warnings))


# --------------------------------------------------------------------------


def _check_destination(root: Path, dest: Path) -> None:
    if dest == root or dest.is_relative_to(root) or root.is_relative_to(dest):
        raise PublishError(f"{dest} overlaps the instructor repository {root}: publish into a folder outside it")
    if dest.exists() and not dest.is_dir():
        raise PublishError(f"{dest} is a file, not a folder")
    if dest.is_dir():
        # A fresh clone of an empty repository holds only .git.
        others = [entry.name for entry in dest.iterdir() if entry.name != ".git"]
        if others and not (dest / MANIFEST).is_file():
            raise PublishError(f"{dest} is not empty and is not a student edition (it has no {MANIFEST}): "
                               "publish into an empty folder or a previous edition")


def _previous_files(dest: Path) -> list[str]:
    """The files a previous edition in ``dest`` lists, checked to lie inside it."""
    manifest = dest / MANIFEST
    if not manifest.is_file():
        return []
    paths = [line.strip() for line in manifest.read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.startswith("#")]
    for path in paths:
        parts = PurePosixPath(path).parts
        target = dest / path
        if (not parts or PurePosixPath(path).is_absolute() or ".." in parts or parts[0] == ".git"
                or (target.exists() and not target.is_file())):
            raise PublishError(f"{manifest} lists {path!r}, which is not a file of a student edition")
    return paths + [MANIFEST]


def _remove_empty_folders(dest: Path, paths: Iterable[str]) -> None:
    folders = {parent for path in paths for parent in PurePosixPath(path).parents if parent != PurePosixPath(".")}
    for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
        target = dest / folder
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()


def _manifest(files: Mapping[str, bytes]) -> str:
    return ("# The student edition of the course, written by the instructor repository's\n"
            "# `make publish`. The next publication into this folder replaces the files\n"
            "# listed here; other files (.git, a licence, a CNAME) stay.\n"
            + "".join(f"{path}\n" for path in sorted(files)))


def _named_files(root: Path, config: Mapping[str, Any]) -> list[str]:
    """Files that the site configuration names: bibliographies, logo, favicon."""
    named = [str(p) for p in config.get("bibtex_bibfiles") or ()]
    named += [str(p) for p in (config.get("logo"), (config.get("html") or {}).get("favicon")) if p]
    missing = [path for path in named if not (root / path).is_file()]
    if missing:
        raise PublishError(f"_config.yml names {', '.join(missing)}, which does not exist")
    return [PurePosixPath(path).as_posix() for path in named]


def _named_folders(config: Mapping[str, Any]) -> list[str]:
    """Folders that the Sphinx configuration names: static files, templates."""
    sphinx_config = (config.get("sphinx") or {}).get("config") or {}
    folders = [*(sphinx_config.get("html_static_path") or ()), *(sphinx_config.get("templates_path") or ())]
    return [PurePosixPath(folder).as_posix().strip("/") for folder in folders]


def _files_under(root: Path, folder: str, tracked: frozenset[str] | None) -> list[str]:
    """The files of ``folder`` (tracked by git, when ``root`` is a git repository)."""
    base = root / folder
    if not base.is_dir():
        return []
    if tracked is not None:
        candidates = [path for path in tracked if path.startswith(folder.rstrip("/") + "/")]
    else:
        candidates = [path.relative_to(root).as_posix() for path in base.rglob("*")]
    return sorted(path for path in candidates
                  if (root / path).is_file() and not _JUNK_PARTS.intersection(PurePosixPath(path).parts)
                  and not path.endswith(".pyc"))


def _tracked_files(root: Path) -> frozenset[str] | None:
    """The files git tracks in ``root``; None when ``root`` is not a git work tree.

    Files that other people have not added yet, and whatever else lies around
    in the work tree, stay out of the edition.
    """
    if not (root / ".git").exists():
        return None
    completed = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], capture_output=True)
    if completed.returncode != 0:
        raise PublishError(f"git ls-files failed in {root}: {completed.stderr.decode(errors='replace').strip()}")
    return frozenset(path for path in completed.stdout.decode("utf-8").split("\0") if path)


def _untracked_files(root: Path, folders: Iterable[str]) -> list[str]:
    """Files in ``folders`` that git does not track (nor ignore): an author's work not added yet."""
    if not (root / ".git").exists():
        return []
    completed = subprocess.run(["git", "-C", str(root), "ls-files", "--others", "--exclude-standard", "-z", "--",
                                *folders], capture_output=True)
    return sorted(path for path in completed.stdout.decode("utf-8").split("\0")
                  if path and not _JUNK_PARTS.intersection(PurePosixPath(path).parts))


def _is_grading_path(path: str) -> bool:
    return PurePosixPath(path).parts[0] in GRADING_PATHS


def _parse_yaml(text: str, name: str) -> dict[str, Any]:
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise PublishError(f"{name} is not valid YAML: {str(error).splitlines()[0]}") from error
    if not isinstance(parsed, dict):
        raise PublishError(f"{name} is not a YAML mapping")
    return parsed


def _strip_suffix(name: str) -> str:
    return re.sub(r"\.(md|ipynb|rst)$", "", str(name).strip("/"))


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
