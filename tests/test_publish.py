"""The student edition (`make publish DEST`): complete, nothing that grades, and
every launch button of its site opens a file it holds.

The edition is published afresh from this repository into a temporary folder
(autograder/publish.py). Then:

1. it holds no line of what grades (solutions, hidden tests, autograder/checks/,
   tests/catalog/) and not the instructors' page, checked line by line against
   this repository; its configuration points at the student repository, and
   it is a repository of its own (Makefile, requirements with the course's
   pins, Binder environment, GitHub Pages workflow);
2. its site, built inside it with its own `make book` command (reusing the
   execution cache of this repository's `make book`, so nothing runs again),
   and this repository's site (_build/html, built by `make book`) have launch
   buttons (Binder, JupyterHub, Colab), download buttons and a repository
   button that all open files of the edition, Colab only .ipynb files;
3. every chapter notebook of the edition runs top to bottom in a fresh kernel
   from a copy of the edition alone, and imports only installed packages (Colab
   opens the notebook without the rest of the repository).
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, urlsplit

import nbformat
import pytest
import yaml

from autograder.cli import main as cli_main
from autograder.publish import (
    MANIFEST,
    NOTEBOOK_PACKAGES,
    PYTHON_VERSION,
    SITE_PACKAGES,
    PublishError,
    course_pins,
    is_markdown_notebook,
    page_source,
    publish,
    toc_pages,
)
from tests.browser import sitekit
from tests.conftest import ROOT

# What grades, and the page that stays with the instructors: none of their
# lines may reach the edition. Named here, not taken from publish.py, so that a
# change to what publish.py copies cannot change what this test looks for.
SECRET_FILES = ("autograder/checks/*.py", "tests/catalog/*.py")
INSTRUCTOR_PAGES = ("book/instructors.md",)
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS",
           "run_hidden_tests", "autograder.hidden", "autograder.checks")
# Lines that say nothing on their own: blank, comments and Markdown headings,
# imports, one word, punctuation, MyST labels and code fences.
TRIVIAL_LINE = re.compile(r"^(|#.*|import [\w., ]+( as \w+)?|from [\w.]+ import .+|[\W_]*|\w+|\w+\(\)|\(\S+\)=|```\S*)$")
WINDOW = 3  # a chapter may share a line with a solution, not this many in a row

# The edition's own files: written by publish, not copied from this repository.
GENERATED = {"_config.yml", "README.md", "Makefile", "requirements.txt", ".gitignore", MANIFEST,
             "binder/requirements.txt", "binder/runtime.txt", ".github/workflows/pages.yml"}
TOP_LEVEL = {"book", "exercises", "binder", ".github", "_config.yml", "_toc.yml", "README.md", "Makefile",
             "requirements.txt", ".gitignore", MANIFEST}

# A hub for the build of the edition's site, when the course configures none,
# so that the JupyterHub buttons are checked too (the links are never followed).
TEST_HUB = "https://hub.example.edu"
SERVICES = {"binderhub_url": "Binder", "jupyterhub_url": "JupyterHub", "colab_url": "Colab"}


def _chapters() -> list[str]:
    """The chapters (MyST Markdown notebooks) of the book, as they are now."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    chapters = []
    for page in toc_pages(toc):
        try:
            source = ROOT / page_source(ROOT, page)
        except PublishError:
            continue  # a missing page fails test_edition_has_every_page_of_the_site
        if is_markdown_notebook(source):
            chapters.append(page)
    return chapters


CHAPTERS = _chapters()


# --------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def student(config) -> dict:
    section = config.get("student_repository") or {}
    if not section.get("url"):
        pytest.skip("student_repository.url is not set in _config.yml: the edition has no launch buttons")
    owner, name = urlsplit(section["url"]).path.strip("/").removesuffix(".git").split("/")[:2]
    return {"url": section["url"].rstrip("/").removesuffix(".git"), "owner": owner, "name": name,
            "branch": section.get("branch") or "main", "book": (section.get("path_to_book") or "").strip("/")}


@pytest.fixture(scope="module")
def edition(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("published") / "edition"
    start = time.monotonic()
    published = publish(ROOT, dest)
    assert time.monotonic() - start < 30, "publishing takes too long"
    assert published.files and published.repository is not None, published.warnings
    print("\n".join(published.warnings))  # files git does not track, in a work tree (shown on failure)
    return dest


def _edition_files(edition: Path) -> list[str]:
    return sorted(p.relative_to(edition).as_posix() for p in edition.rglob("*") if p.is_file())


@dataclass(frozen=True)
class BuiltSite:
    html: Path
    config: dict  # the _config.yml it was built with


@pytest.fixture(scope="module")
def edition_site(edition, tmp_path_factory) -> BuiltSite:
    """The edition's site, built inside a copy of the edition by its own `make book` command."""
    cache = ROOT / "_build" / ".jupyter_cache"
    if not cache.is_dir():
        reason = f"{cache} is missing: run `make book` first (the edition's build reuses its executed notebooks)"
        if sitekit.in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("edition-site")
    source = work / "edition"
    shutil.copytree(edition, source)
    config_path = source / "_config.yml"
    edition_config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    if not (edition_config.get("launch_buttons") or {}).get("jupyterhub_url"):
        edition_config.setdefault("launch_buttons", {})["jupyterhub_url"] = TEST_HUB
        config_path.write_text(yaml.safe_dump(edition_config, sort_keys=False), encoding="utf-8")
    output = work / "output"
    shutil.copytree(cache, output / "_build" / ".jupyter_cache")
    command = [*_book_recipe(source / "Makefile", Path(sys.executable).parent), "--path-output", str(output)]
    log = work / "build.log"
    with open(log, "w", encoding="utf-8") as out:
        completed = subprocess.run(command, cwd=source, stdout=out, stderr=subprocess.STDOUT, timeout=900)
    text = log.read_text(encoding="utf-8", errors="replace")
    assert completed.returncode == 0, f"`make book` fails in the student edition:\n{text[-4000:]}"
    return BuiltSite(output / "_build" / "html", edition_config)


def _book_recipe(makefile: Path, bin_dir: Path) -> list[str]:
    """The command of a Makefile's `book` target, with $(BIN) resolved."""
    lines = makefile.read_text(encoding="utf-8").splitlines()
    start = lines.index(next(line for line in lines if line.startswith("book:")))
    recipe = []
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    assert len(recipe) == 1, f"{makefile}: the book target should be one command, got {recipe}"
    return recipe[0].replace("$(BIN)", str(bin_dir)).split()


# --------------------------------------------------------------------------
# 1. Nothing that grades; a complete repository pointing at the student repository


def _normalise(line: str) -> str:
    return " ".join(line.split())


def _notebook_lines(path: Path) -> list[str]:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    lines = []
    for cell in notebook.get("cells", []):
        source = cell.get("source", "")
        lines += ("".join(source) if isinstance(source, list) else source).splitlines()
        for output in cell.get("outputs", []) or []:
            text = output.get("text") or (output.get("data") or {}).get("text/plain") or ""
            lines += ("".join(text) if isinstance(text, list) else text).splitlines()
    return lines


def _text_lines(path: Path) -> list[str] | None:
    if path.suffix == ".ipynb":
        return _notebook_lines(path)
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        return None


def _secret_sources() -> dict[str, list[str]]:
    """Lines of what grades, by file: solution and hidden-test blocks of the
    source notebooks, the hidden checks, the mistake catalog, the instructors' page."""
    sources: dict[str, list[str]] = {}
    for path in sorted((ROOT / "solutions").glob("*/*.ipynb")):
        inside, lines = False, []
        for line in _notebook_lines(path):
            if "BEGIN SOLUTION" in line or "BEGIN HIDDEN TESTS" in line:
                inside = True
            elif "END SOLUTION" in line or "END HIDDEN TESTS" in line:
                inside = False
            elif inside:
                lines.append(line)
        sources[path.relative_to(ROOT).as_posix()] = lines
    for pattern in SECRET_FILES:
        for path in sorted(ROOT.glob(pattern)):
            sources[path.relative_to(ROOT).as_posix()] = path.read_text(encoding="utf-8").splitlines()
    for page in INSTRUCTOR_PAGES:
        sources[page] = (ROOT / page).read_text(encoding="utf-8").splitlines()
    return sources


def _public_lines() -> set[str]:
    """Lines that students see by design: the released notebooks (the `def`
    lines, docstrings and visible tests that solutions and the catalog share)."""
    return {_normalise(line) for path in (ROOT / "exercises").glob("*/*.ipynb") for line in _notebook_lines(path)}


def _distinctive(lines, public: set[str]) -> list[str]:
    return [n for n in map(_normalise, lines) if not TRIVIAL_LINE.match(n) and n not in public]


def test_edition_holds_nothing_that_grades(edition):
    """Line by line: no file of the edition holds a line of a solution, of a
    hidden test, of autograder/checks/ or tests/catalog/, or of the instructors'
    page. The book's own sources (copied from book/, and the chapters'
    notebooks) may share a single line with them, a loop header or a formula;
    three in a row is a leak, as in tests/test_site_no_solutions.py, which
    checks the chapters on the site."""
    files = _edition_files(edition)
    grading = [f for f in files if PurePosixPath(f).parts[0] in ("solutions", "autograder", "tests")
               or f == "nbgrader_config.py"]
    assert not grading, f"the edition holds grading files: {grading}"
    assert {PurePosixPath(f).parts[0] for f in files} <= TOP_LEVEL, f"unexpected files: {files}"

    public = _public_lines()
    secrets = {name: _distinctive(lines, public) for name, lines in _secret_sources().items()}
    assert any(secrets.values()), "found no solution, check or catalog line to look for"
    secret_lines = {line: name for name, lines in secrets.items() for line in lines}
    windows = {"\n".join(lines[i:i + WINDOW]): name for name, lines in secrets.items()
               for i in range(len(lines) - WINDOW + 1)}
    chapter_notebooks = {f"{chapter}.ipynb" for chapter in CHAPTERS}
    leaks, marked = [], []
    for name in files:
        lines = _text_lines(edition / name)
        if lines is None:
            continue
        text = "\n".join(lines)
        marked += [f"{name}: {marker!r}" for marker in MARKERS if marker in text]
        ours = _distinctive(lines, public)
        book_source = name.startswith("book/") and name not in INSTRUCTOR_PAGES and (
            name in chapter_notebooks
            or ((ROOT / name).is_file() and (edition / name).read_bytes() == (ROOT / name).read_bytes()))
        if book_source:
            joined = "\n".join(ours)
            leaks += [f"{name}: {WINDOW} lines of {source} in a row: {window!r}"
                      for window, source in windows.items() if window in joined][:5]
        else:
            leaks += [f"{name}: a line of {secret_lines[line]}: {line!r}" for line in ours if line in secret_lines]
    assert not marked, "nbgrader markers or hidden-test hooks in the edition:\n" + "\n".join(marked)
    assert not leaks, "the edition holds lines of what grades:\n" + "\n".join(leaks[:50])


def test_edition_has_every_page_of_the_site_and_copies_them_unchanged(edition):
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    assert (edition / "_toc.yml").read_bytes() == (ROOT / "_toc.yml").read_bytes()
    for page in toc_pages(toc):
        assert (edition / page_source(ROOT, page)).is_file(), f"{page} is missing from the edition"
    for page in INSTRUCTOR_PAGES:
        assert (edition / page).read_bytes() != (ROOT / page).read_bytes(), f"{page} is the instructors' page"
    released = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "exercises").glob("*/*.ipynb"))
    assert released, "no released notebook in exercises/"
    copied = [f for f in _edition_files(edition) if f not in GENERATED and f not in INSTRUCTOR_PAGES
              and (ROOT / f).is_file()]
    assert set(released) <= set(copied), set(released) - set(copied)
    changed = [f for f in copied if (edition / f).read_bytes() != (ROOT / f).read_bytes()]
    assert not changed, f"files of the edition that differ from this repository's: {changed}"
    generated = [f for f in _edition_files(edition) if f not in GENERATED and not (ROOT / f).is_file()]
    tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files", "book", "exercises"], capture_output=True, text=True)
    if tracked.returncode == 0:  # everything the book includes or imports, but the instructors' page
        missing = set(tracked.stdout.split()) - set(copied) - set(INSTRUCTOR_PAGES)
        assert not {f for f in missing if (ROOT / f).is_file()}, f"left out of the edition: {sorted(missing)}"
    assert sorted(generated) == sorted([*(f"{c}.ipynb" for c in CHAPTERS)]), generated
    manifest = [line for line in (edition / MANIFEST).read_text().splitlines() if line and not line.startswith("#")]
    assert sorted(manifest) == [f for f in _edition_files(edition) if f != MANIFEST]


def test_edition_configuration_points_at_the_student_repository(edition, config, student):
    """The edition's _config.yml is this repository's, with the repository and
    launch buttons on the student repository; this repository's own site uses
    the same repository (YAML alias), so that it previews the published one."""
    ours = yaml.safe_load((edition / "_config.yml").read_text(encoding="utf-8"))
    assert ours["repository"] == {"url": student["url"], "path_to_book": student["book"], "branch": student["branch"]}
    assert config["repository"] == config["student_repository"], \
        "_config.yml: `repository` should be the student repository (repository: *student_repository)"
    assert "student_repository" not in ours
    assert ours["html"]["use_repository_button"] is True
    assert ours["launch_buttons"] == config["launch_buttons"]
    urls = set(re.findall(r"https://github\.com/[\w.-]+/[\w.-]+", (edition / "_config.yml").read_text()))
    assert urls == {student["url"]}, f"the edition's _config.yml names other repositories: {urls}"
    origin = subprocess.run(["git", "-C", str(ROOT), "remote", "get-url", "origin"], capture_output=True, text=True)
    if origin.returncode == 0 and "github.com" in origin.stdout:
        assert student["url"].lower() not in origin.stdout.strip().lower().removesuffix(".git"), \
            "student_repository.url is the instructor's own repository"
    # Everything else is this repository's configuration: the same site.
    for key in set(config) - {"repository", "student_repository", "sphinx"}:
        assert ours.get(key) == config[key], key
    theirs_sphinx, ours_sphinx = config["sphinx"], ours["sphinx"]
    assert ours_sphinx["extra_extensions"] == theirs_sphinx["extra_extensions"]
    assert not ours_sphinx.get("local_extensions"), "the edition needs no extension of the instructor repository"
    excluded = ours_sphinx["config"].pop("exclude_patterns")
    assert excluded == theirs_sphinx["config"]["exclude_patterns"] + [f"{c}.ipynb" for c in CHAPTERS]
    assert ours_sphinx["config"] == {k: v for k, v in theirs_sphinx["config"].items() if k != "exclude_patterns"}


def test_edition_builds_its_site_with_the_same_command(edition):
    """`make book` in the edition runs this repository's strict build command
    (test_published_site_* run it)."""
    bin_dir = Path("/venv/bin")
    assert _book_recipe(edition / "Makefile", bin_dir) == _book_recipe(ROOT / "Makefile", bin_dir)
    assert f"command -v python{PYTHON_VERSION} " in (edition / "Makefile").read_text()
    ignored = (edition / ".gitignore").read_text().split()
    assert {".venv/", "_build/"} <= set(ignored)


def _pins_of(path: Path) -> dict[str, str]:
    return course_pins(path.read_text(encoding="utf-8"))


def test_edition_installs_the_course_pins_with_cpu_pytorch(edition):
    course = _pins_of(ROOT / "requirements.txt")
    site = _pins_of(edition / "requirements.txt")
    binder = _pins_of(edition / "binder" / "requirements.txt")
    for name in (*SITE_PACKAGES, *NOTEBOOK_PACKAGES):
        key = re.sub(r"[-_.]+", "-", name).lower()
        assert site.get(key) == course[key], f"requirements.txt: {name} is not pinned as the course pins it"
    for name in NOTEBOOK_PACKAGES:
        key = re.sub(r"[-_.]+", "-", name).lower()
        assert binder.get(key, "").split("+")[0] == course[key], f"binder/requirements.txt: {name}"
    assert binder["torch"].endswith("+cpu"), "Binder should install the CPU build of PyTorch"
    for path in (edition / "requirements.txt", edition / "binder" / "requirements.txt"):
        assert "--extra-index-url https://download.pytorch.org/whl/cpu" in path.read_text(), path
    assert (edition / "binder" / "runtime.txt").read_text().strip() == f"python-{PYTHON_VERSION}"
    assert sys.version_info[:2] == tuple(map(int, PYTHON_VERSION.split("."))), "the course runs on this Python"


def _imports(notebook: Path) -> set[str]:
    """Top-level modules imported by the code cells of a notebook."""
    names = set()
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        code = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_binder_environment_has_what_the_notebooks_import(edition):
    binder = set(_pins_of(edition / "binder" / "requirements.txt"))
    distributions = importlib.metadata.packages_distributions()
    notebooks = [*(edition / "exercises").glob("*/*.ipynb"), *(edition / f"{c}.ipynb" for c in CHAPTERS)]
    missing = []
    for notebook in notebooks:
        for module in sorted(_imports(notebook) - set(sys.stdlib_module_names)):
            if (notebook.parent / module).exists() or (notebook.parent / f"{module}.py").exists():
                continue  # a module of the edition (test_chapter_imports_only_installed_packages)
            provided = {re.sub(r"[-_.]+", "-", d).lower() for d in distributions.get(module, ())}
            if not provided & binder:
                missing.append(f"{notebook.relative_to(edition)} imports {module}")
    assert not missing, "binder/requirements.txt lacks:\n" + "\n".join(missing)


def test_pages_workflow_builds_and_deploys_the_site(edition, config):
    workflows = list((edition / ".github" / "workflows").glob("*.yml"))
    assert len(workflows) == 1, workflows
    workflow = yaml.safe_load(workflows[0].read_text(encoding="utf-8"))
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    branch = (config.get("student_repository") or {}).get("branch") or "main"
    assert branch in triggers["push"]["branches"]
    (job,) = workflow["jobs"].values()
    assert {"pages": "write", "id-token": "write"}.items() <= job["permissions"].items()
    steps = job["steps"]
    uses = [step.get("uses", "").split("@")[0] for step in steps]
    assert uses.index("actions/checkout") < uses.index("actions/upload-pages-artifact") \
        < uses.index("actions/deploy-pages"), uses
    python = next(step for step in steps if step.get("uses", "").startswith("actions/setup-python"))
    assert str(python["with"]["python-version"]) == PYTHON_VERSION
    build = [step for step in steps if "run" in step]
    assert [step["run"].strip() for step in build] == ["make book"], "the workflow builds with `make book`"
    upload = next(step for step in steps if step.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "_build/html"


def test_chapter_notebooks_are_the_chapters(edition):
    """book/<chapter>.ipynb has the cells of book/<chapter>.md (jupytext), no
    outputs, and ids that do not change when the chapter does not."""
    import jupytext

    assert CHAPTERS, "no chapter found in _toc.yml"
    for chapter in CHAPTERS:
        shipped = nbformat.read(edition / f"{chapter}.ipynb", as_version=4)
        nbformat.validate(shipped)
        source = jupytext.read(ROOT / f"{chapter}.md", fmt="md:myst")
        assert [(c.cell_type, c.source, c.metadata.get("tags")) for c in shipped.cells] == \
            [(c.cell_type, c.source, c.metadata.get("tags")) for c in source.cells], f"{chapter}.ipynb is stale"
        assert shipped.metadata.kernelspec == source.metadata.kernelspec
        assert not any(c.get("outputs") for c in shipped.cells if c.cell_type == "code"), chapter


# --------------------------------------------------------------------------
# Bad input, publishing again


def _instructor_copy(tmp_path: Path, **student_repository) -> Path:
    """A copy of this repository (without git: publish then takes the files on disk)."""
    root = tmp_path / "instructor"
    shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns(".venv", "_build", ".git", ".jupyter_cache",
                                                              "__pycache__", ".pytest_cache"))
    if student_repository:
        config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
        config["student_repository"] = {**config["student_repository"], **student_repository}
        (root / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return root


def test_publish_refuses_a_folder_that_is_not_an_edition(tmp_path, capsys):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert cli_main(["publish", str(foreign)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and MANIFEST in err, err
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    inside = ROOT / "student-edition-here"
    assert cli_main(["publish", str(inside)]) == 2
    assert "overlaps the instructor repository" in capsys.readouterr().err and not inside.exists()


def test_publish_into_a_previous_edition_replaces_its_files_only(edition, tmp_path):
    dest = tmp_path / "student"
    (dest / ".git").mkdir(parents=True)
    (dest / ".git" / "HEAD").write_text("ref: refs/heads/main\n")  # an empty clone: accepted
    first = publish(ROOT, dest)
    (dest / "LICENSE").write_text("the course's licence")
    (dest / "book" / "stale.md").write_text("a page the instructor has since removed")
    with open(dest / MANIFEST, "a", encoding="utf-8") as manifest:
        manifest.write("book/stale.md\n")
    second = publish(ROOT, dest)
    assert first.files == second.files
    assert not (dest / "book" / "stale.md").exists()
    assert (dest / "LICENSE").is_file() and (dest / ".git" / "HEAD").is_file()
    for name in second.files:  # publishing the same sources twice writes the same bytes
        assert (dest / name).read_bytes() == (edition / name).read_bytes(), name
    (dest / MANIFEST).write_text("../outside\n")
    with pytest.raises(PublishError, match="not a file of a student edition"):
        publish(ROOT, dest)


def test_publish_without_a_student_repository_turns_the_buttons_off(tmp_path):
    root = _instructor_copy(tmp_path, url="")
    edition = publish(root, tmp_path / "edition")
    assert edition.repository is None
    assert len(edition.warnings) == 1 and "student_repository.url" in edition.warnings[0]
    ours = yaml.safe_load((tmp_path / "edition" / "_config.yml").read_text(encoding="utf-8"))
    assert "launch_buttons" not in ours and "repository" not in ours
    assert ours["html"]["use_repository_button"] is False
    assert (tmp_path / "edition" / "book" / f"{CHAPTERS[0].split('/')[-1]}.ipynb").is_file()
    wrong = _instructor_copy(tmp_path / "wrong", url="https://gitlab.com/course/student")
    with pytest.raises(PublishError, match=r"student_repository\.url must be a GitHub repository"):
        publish(wrong, tmp_path / "wrong-edition")
    assert not (tmp_path / "wrong-edition").exists()


def test_make_publish_runs_the_command(tmp_path):
    # INSTALLED= skips the venv prerequisite: nothing is installed by this test.
    usage = subprocess.run(["make", "-s", "publish", "INSTALLED="], cwd=ROOT, capture_output=True, text=True)
    assert usage.returncode == 2 and "make publish DEST=" in usage.stdout
    dry = subprocess.run(["make", "-n", "publish", f"DEST={tmp_path}/x", "INSTALLED="], cwd=ROOT,
                         capture_output=True, text=True)
    assert f'-m autograder publish "{tmp_path}/x"' in dry.stdout, dry.stdout


def test_python_m_autograder_publish(tmp_path):
    completed = subprocess.run([sys.executable, "-m", "autograder", "publish", str(tmp_path / "x")], cwd=ROOT,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert "student edition:" in completed.stdout and (tmp_path / "x" / MANIFEST).is_file()


# --------------------------------------------------------------------------
# 2. Every launch button opens a file of the edition


class _HeaderButtons(HTMLParser):
    """The launch, download and repository buttons of a page, and every link."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.launch: list[tuple[str, str]] = []  # (title, href)
        self.download: list[str] = []
        self.repository: list[str] = []
        self.links: list[str] = []
        self._launch_depth = 0
        self._depth = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "div":
            self._depth += 1
            if "dropdown-launch-buttons" in classes:
                self._launch_depth = self._depth
        if tag != "a" or not a.get("href"):
            return
        self.links.append(a["href"])
        if self._launch_depth:
            self.launch.append((a.get("title") or "", a["href"]))
        if {"btn-download-notebook-button", "btn-download-source-button"} & set(classes):
            self.download.append(a["href"])
        if "btn-source-repository-button" in classes:
            self.repository.append(a["href"])

    def handle_endtag(self, tag):
        if tag == "div":
            if self._depth == self._launch_depth:
                self._launch_depth = 0
            self._depth -= 1


def _buttons(page: Path) -> _HeaderButtons:
    parser = _HeaderButtons()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


@dataclass(frozen=True)
class LaunchTarget:
    service: str
    repository: str  # owner/name
    branch: str
    path: str        # relative to the repository's root


def _launch_target(url: str, services: dict[str, str], interface: str) -> LaunchTarget:
    """What a launch link of sphinx-book-theme opens (its three URL shapes)."""
    prefix = {"jupyterlab": "lab/tree/", "classic": "tree/"}[interface]
    parts = urlsplit(url)
    for service, base in services.items():
        if not url.startswith(base + "/"):
            continue
        path = parts.path[len(urlsplit(base).path):].strip("/").split("/")
        query = parse_qs(parts.query)
        if service == "Binder":  # <binder>/v2/gh/<owner>/<name>/<branch>?urlpath=lab/tree/<path>
            assert path[:2] == ["v2", "gh"], url
            return LaunchTarget(service, f"{path[2]}/{path[3]}", path[4],
                                query["urlpath"][0].removeprefix(prefix))
        if service == "JupyterHub":  # nbgitpuller: ?repo=<url>&urlpath=lab/tree/<name>/<path>&branch=<branch>
            assert path == ["hub", "user-redirect", "git-pull"], url
            repository = urlsplit(query["repo"][0]).path.strip("/")
            name = repository.split("/")[-1]
            return LaunchTarget(service, repository, query["branch"][0],
                                query["urlpath"][0].removeprefix(prefix).removeprefix(f"{name}/"))
        if service == "Colab":  # <colab>/github/<owner>/<name>/blob/<branch>/<path>
            assert path[0] == "github" and path[3] == "blob", url
            return LaunchTarget(service, f"{path[1]}/{path[2]}", path[4], "/".join(path[5:]))
    raise AssertionError(f"not a launch link of a configured service: {url}")


def check_launch_links(site: Path, edition: Path, site_config: dict, student: dict) -> list[str]:
    """Every page's buttons, checked against the edition's files; returns the links checked."""
    buttons = site_config.get("launch_buttons") or {}
    services = {SERVICES[key]: buttons[key].rstrip("/") for key in SERVICES if buttons.get(key)}
    interface = buttons.get("notebook_interface", "classic")
    assert services, "no launch button configured"
    toc = yaml.safe_load((edition / "_toc.yml").read_text(encoding="utf-8"))
    problems, checked = [], []
    for page in toc_pages(toc):
        html = site / f"{page}.html"
        parsed = _buttons(html)
        source = edition / page_source(edition, page)
        notebook = source.suffix == ".ipynb" or is_markdown_notebook(source)
        if parsed.repository != [student["url"]]:
            problems.append(f"{page}: repository button {parsed.repository}, not {student['url']}")
        for href in parsed.download:  # download buttons: files of the built site
            target = (html.parent / href).resolve()
            if not target.is_file() or not target.is_relative_to(site):
                problems.append(f"{page}: download button {href} opens no file of the site")
        service_links = [href for href in parsed.links if any(href.startswith(b + "/") for b in services.values())]
        if sorted(service_links) != sorted(href for _, href in parsed.launch):
            problems.append(f"{page}: launch links outside the launch menu: {service_links}")
        if not notebook:
            if parsed.launch:
                problems.append(f"{page}: a page that is not a notebook has launch buttons {parsed.launch}")
            continue
        found = {}
        for title, href in parsed.launch:
            target = _launch_target(href, services, interface)
            found[target.service] = target
            path = PurePosixPath(target.path)
            in_edition = path.relative_to(student["book"]).as_posix() if student["book"] else path.as_posix()
            checked.append(f"{page}: {target.service} -> {target.repository}@{target.branch}:{target.path}")
            if target.repository != f"{student['owner']}/{student['name']}" or target.branch != student["branch"]:
                problems.append(f"{page}: {title} opens {target.repository}@{target.branch}, not the student repository")
            if not (edition / in_edition).is_file():
                problems.append(f"{page}: {title} opens {target.path}, which the edition does not have")
            if path.suffix != ".ipynb":
                problems.append(f"{page}: {title} opens {target.path}, not a notebook")
            if in_edition != f"{page}.ipynb":
                problems.append(f"{page}: {title} opens {target.path}, not {page}.ipynb")
        missing = set(services) - set(found)
        if missing:
            problems.append(f"{page}: no {', '.join(sorted(missing))} button")
    assert not problems, f"{len(problems)} broken buttons:\n" + "\n".join(problems)
    return checked


def test_published_site_builds_and_every_launch_button_opens_a_file_of_the_edition(edition, edition_site, student):
    """The site built inside the edition (as its `make book` and its Pages
    workflow build it): Binder, JupyterHub and Colab open files of the
    edition, Colab only notebooks, every chapter its book/<chapter>.ipynb.
    It has the pages and figures of this repository's site."""
    checked = check_launch_links(edition_site.html, edition, edition_site.config, student)
    assert {line.split(": ")[1].split(" ")[0] for line in checked} == set(SERVICES.values())
    notebook_pages = [p for p in toc_pages(yaml.safe_load((edition / "_toc.yml").read_text()))
                      if p in CHAPTERS or p.startswith("exercises/")]
    assert len(checked) == len(SERVICES) * len(notebook_pages)
    site = sitekit.require_site()
    assert {p.relative_to(edition_site.html).as_posix() for p in sitekit.html_pages(edition_site.html)} == \
        {p.relative_to(site).as_posix() for p in sitekit.html_pages(site)}
    assert {p.name for p in (edition_site.html / "_images").glob("*")} == {p.name for p in (site / "_images").glob("*")}


def test_this_repository_site_links_the_student_edition(edition, config, student):
    """The site `make book` built here (_build/html) links as the published
    one does: its launch buttons open files of the student edition."""
    site = sitekit.require_site()
    checked = check_launch_links(site, edition, config, student)
    assert any("Colab" in line for line in checked)


# --------------------------------------------------------------------------
# 3. Chapters run from the edition alone


@pytest.fixture(scope="module")
def edition_copy(edition, tmp_path_factory) -> Path:
    """A copy of the edition, where a kernel runs as on Binder or a hub."""
    copy = tmp_path_factory.mktemp("student-clone") / "edition"
    shutil.copytree(edition, copy)
    return copy


# The last cell of every run: the modules and sys.path entries that come from
# this repository (its .venv aside: a clone keeps the venv inside).
PROBE = f"""
import json, sys
def instructor(path):
    return path.startswith({str(ROOT)!r} + "/") and not path.startswith(sys.prefix + "/")
print(json.dumps({{"modules": sorted(name for name, module in list(sys.modules.items())
                                     if instructor(getattr(module, "__file__", None) or "")),
                  "path": [entry for entry in sys.path if instructor(entry)]}}))
"""


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_notebook_runs_from_a_copy_of_the_edition(edition_copy, chapter):
    from nbclient import NotebookClient

    notebook = nbformat.read(edition_copy / f"{chapter}.ipynb", as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(PROBE))
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str((edition_copy / chapter).parent)}})
    client.execute(env=env)  # raises CellExecutionError with the failing cell's traceback
    # The kernel may flush the probe's line in several stream messages.
    probe = json.loads("".join(output.get("text", "") for output in notebook.cells[-1].outputs
                               if output.get("name") == "stdout"))
    assert probe == {"modules": [], "path": []}, f"{chapter} used the instructor repository: {probe}"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_imports_only_installed_packages(edition, chapter):
    """Colab opens book/<chapter>.ipynb alone: a chapter imports installed
    packages only, never a module of the repository (book/_code)."""
    distributions = importlib.metadata.packages_distributions()
    local = sorted(module for module in _imports(edition / f"{chapter}.ipynb")
                   if module not in sys.stdlib_module_names and module not in distributions)
    assert not local, (f"{chapter}.ipynb imports {local}, which Colab does not have "
                       "(it opens the notebook alone)")
