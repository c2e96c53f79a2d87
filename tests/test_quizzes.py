"""The self-check quizzes: well-formed sources, and immediate feedback in a browser.

Each chapter includes ``book/quizzes/<chapter>.md`` right before its Assignment
section. A quiz is plain HTML (radio buttons in a form) styled by
``book/_static/custom.css``: checking an answer shows the feedback paragraph
that follows it, marked right or wrong, with no script and no network.

The source checks run anywhere. The browser test loads every chapter of the
built site (``_build/html``, or the folder named by SITE_DIR, as the other
site tests) in headless Chromium, offline, answers one question of each quiz
right and another one wrong, and checks what the page shows.
"""

from __future__ import annotations

import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from browser import crawl, sitekit  # noqa: E402
from tests import chapter_checks as checks  # noqa: E402

# Under pytest-xdist with --dist loadgroup the module runs on one worker: one browser.
pytestmark = pytest.mark.xdist_group("quizzes")

CHAPTERS = ("covariate_shift", "bn_math", "train_eval", "alternatives", "pitfalls")
QUIZZES = checks.BOOK / "quizzes"


class _QuizParser(HTMLParser):
    """Questions of one quiz: for each, its options as (input id, radio name, right?, feedback text)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.questions: list[list[dict]] = []
        self.ids: list[str] = []
        self._option: dict | None = None
        self._in_feedback = False
        self.forms = 0
        self.resets = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if a.get("id"):
            self.ids.append(a["id"])
        if tag == "form" and "bn-quiz" in classes:
            self.forms += 1
        elif tag == "fieldset" and "bn-quiz-question" in classes:
            self.questions.append([])
        elif tag == "div" and "bn-quiz-option" in classes:
            self._option = {"right": "bn-quiz-right" in classes, "wrong": "bn-quiz-wrong" in classes,
                            "feedback": ""}
            self.questions[-1].append(self._option)
        elif tag == "input" and self._option is not None:
            self._option.update(type=a.get("type"), id=a.get("id"), name=a.get("name"))
        elif tag == "label" and self._option is not None:
            self._option["label_for"] = a.get("for")
        elif tag == "p" and "bn-quiz-feedback" in classes:
            self._in_feedback = True
        elif tag == "button" and a.get("type") == "reset":
            self.resets += 1

    def handle_endtag(self, tag):
        if tag == "p":
            self._in_feedback = False
        elif tag == "div":
            self._option = None

    def handle_data(self, data):
        if self._in_feedback and self._option is not None:
            self._option["feedback"] += data


def _parse(chapter: str) -> _QuizParser:
    text = (QUIZZES / f"{chapter}.md").read_text(encoding="utf-8")
    block = re.search(r"```\{raw\} html\n(.*?)\n```", text, re.S)
    assert block, f"{chapter}: no raw html block"
    parser = _QuizParser()
    parser.feed(block.group(1))
    parser.close()
    return parser


# --------------------------------------------------------------------------
# The sources


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_each_quiz_has_three_to_five_questions_with_one_right_answer(chapter):
    quiz = _parse(chapter)
    assert quiz.forms == 1 and quiz.resets == 1
    assert 3 <= len(quiz.questions) <= 5, f"{chapter}: {len(quiz.questions)} questions"
    for number, options in enumerate(quiz.questions, start=1):
        assert len(options) >= 2, f"{chapter} question {number}"
        assert sum(option["right"] for option in options) == 1, f"{chapter} question {number}"
        assert all(option["right"] != option["wrong"] for option in options)
        assert len({option["name"] for option in options}) == 1, f"{chapter} question {number}: radio names"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_answer_has_a_labelled_radio_and_a_one_sentence_explanation(chapter):
    for options in _parse(chapter).questions:
        for option in options:
            assert option["type"] == "radio" and option["label_for"] == option["id"]
            verdict = "Right." if option["right"] else "Not quite."
            text = " ".join(option["feedback"].split())
            assert text.startswith(verdict + " "), text
            explanation = text[len(verdict) + 1:]
            assert len(explanation) > 20, text


def test_ids_and_radio_names_are_unique_across_the_book():
    """Pages never share quizzes, but unique names keep any two quizzes independent."""
    ids, names = [], set()
    for chapter in CHAPTERS:
        quiz = _parse(chapter)
        ids += quiz.ids
        question_names = [options[0]["name"] for options in quiz.questions]
        assert not names & set(question_names)
        names |= set(question_names)
    assert len(ids) == len(set(ids)), "duplicate ids in the quizzes"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_each_chapter_includes_its_quiz_right_before_the_assignment(chapter):
    label = {"covariate_shift": "cs-assignment", "bn_math": "bn-math-assignment",
             "train_eval": "train-eval-assignment", "alternatives": "alternatives-assignment",
             "pitfalls": "pitfalls-assignment"}[chapter]
    checks.check_quiz_before_assignment(checks.Chapter(chapter), label)


def test_quizzes_need_no_script():
    """Jupyter Book adds every .js under book/_static to every page: the quizzes add none."""
    assert not list((checks.BOOK / "_static").rglob("*.js"))
    for chapter in CHAPTERS:
        text = (QUIZZES / f"{chapter}.md").read_text(encoding="utf-8")
        assert "<script" not in text and not re.search(r"\son\w+=", text), chapter
    css = (checks.BOOK / "_static" / "custom.css").read_text(encoding="utf-8")
    assert ".bn-quiz-option input:checked ~ .bn-quiz-feedback" in css


# --------------------------------------------------------------------------
# In the browser


@pytest.fixture(scope="module")
def site() -> Path:
    return sitekit.require_site()


@pytest.fixture(scope="module")
def browser_page(site):
    pytest.importorskip("playwright.sync_api", reason="playwright is in requirements.txt")
    sitekit.require_chromium()
    from playwright.sync_api import sync_playwright

    with sitekit.serve(site) as base, sync_playwright() as pw:
        browser = crawl.launch(pw)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
        remote: list[str] = []
        crawl._route_offline(context, base, remote)
        context.set_default_timeout(20_000)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield base, page, errors, remote
        browser.close()


def _visible_feedback(page, prefix):
    return page.eval_on_selector_all(
        f"#{prefix}-quiz-form .bn-quiz-feedback",
        "nodes => nodes.filter(n => getComputedStyle(n).display !== 'none').map(n => n.textContent.trim())")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_answers_get_immediate_feedback_in_the_browser(browser_page, chapter):
    base, page, errors, remote = browser_page
    quiz = _parse(chapter)
    prefix = quiz.questions[0][0]["name"].split("-q")[0]
    page.goto(f"{base}book/{chapter}.html", wait_until="load")
    assert page.locator(f"#{prefix}-quiz-form").count() == 1, f"{chapter}: the quiz is not on the page"
    clashes = page.evaluate("ids => ids.filter(id => document.querySelectorAll(`[id='${id}']`).length !== 1)",
                            quiz.ids)
    assert not clashes, f"{chapter}: ids of the quiz also used elsewhere on the page: {clashes}"
    assert _visible_feedback(page, prefix) == [], "feedback shown before any answer"

    # One question answered right, by clicking the label as a reader does.
    right = next(option for option in quiz.questions[0] if option["right"])
    page.click(f"label[for='{right['id']}']")
    assert page.is_checked(f"#{right['id']}")
    shown = _visible_feedback(page, prefix)
    assert len(shown) == 1 and shown[0].startswith("Right. "), shown
    mark = page.eval_on_selector(f"#{right['id']} ~ .bn-quiz-feedback .bn-quiz-verdict",
                                 "n => getComputedStyle(n, '::before').content")
    assert "\u2713" in mark, mark          # a check mark before "Right."
    assert page.locator(f"#{right['id']} ~ .bn-quiz-feedback").is_visible()

    # Another question answered wrong.
    wrong = next(option for option in quiz.questions[1] if option["wrong"])
    page.click(f"label[for='{wrong['id']}']")
    shown = _visible_feedback(page, prefix)
    assert len(shown) == 2 and any("Not quite." in text for text in shown), shown
    colours = page.eval_on_selector(
        f"#{wrong['id']} ~ .bn-quiz-feedback",
        "n => [getComputedStyle(n).borderLeftColor, getComputedStyle(n).display]")
    assert colours[1] == "block"
    right_colour = page.eval_on_selector(f"#{right['id']} ~ .bn-quiz-feedback",
                                         "n => getComputedStyle(n).borderLeftColor")
    assert colours[0] != right_colour, "right and wrong answers look the same"

    # Changing one's mind replaces the feedback of that question.
    other = next(option for option in quiz.questions[1] if option["right"])
    page.click(f"label[for='{other['id']}']")
    shown = _visible_feedback(page, prefix)
    assert len(shown) == 2 and all("Right." in text for text in shown), shown

    # The reset button clears every answer.
    page.click(f"#{prefix}-quiz-form button[type=reset]")
    assert _visible_feedback(page, prefix) == []
    assert not errors, errors
    assert not remote, remote
