"""``grades.csv`` and ``report.html`` for the instructor.

``grades.csv``: one row per student of the class, one column per question
(points, from the gradebook), the total, the maximum, a status (``graded`` or
``error``) and the reasons (everything odd about that submission, one line
each). Plain UTF-8 CSV with a header row: any LMS imports it.

``report.html``: a self-contained page (no network): the class's notes, then
per question a histogram of scores (matplotlib, embedded as PNG) and the most
frequent failure messages, then the table of students with their reasons.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from collections import Counter
from pathlib import Path
from typing import Any


#: What a cell graded by hand shows until an instructor has graded it: never a zero.
BY_HAND = "to grade by hand"


def _points(course: Any) -> tuple[dict[str, float], set[str]]:
    """Points of every graded cell, in notebook order, and which of them are graded by hand."""
    import json

    points: dict[str, float] = {}
    manual: set[str] = set()
    for name in course.notebooks:
        data = json.loads((course.root / "solutions" / course.assignment / f"{name}.ipynb").read_text("utf-8"))
        for cell in data["cells"]:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if meta.get("grade"):
                points[meta["grade_id"]] = float(meta.get("points", 0))
                if meta.get("solution"):  # an answer cell that is graded: written answers, graded by a person
                    manual.add(meta["grade_id"])
    return points, manual


def _gradebook_scores(course: Any, students: list[str]) -> dict[str, dict[str, float | None]]:
    """Each student's score per graded cell; ``None`` for a cell that still waits for a person."""
    from nbgrader.api import Gradebook, MissingEntry

    scores: dict[str, dict[str, float | None]] = {}
    with Gradebook(course.db_url, course.course_id) as gb:
        for student in students:
            try:
                submission = gb.find_submission(course.assignment, student)
            except MissingEntry:
                continue
            scores[student] = {grade.name: (None if grade.needs_manual_grade and grade.manual_score is None
                                            else float(grade.score or 0.0))
                               for notebook in submission.notebooks for grade in notebook.grades}
    return scores


def write_outputs(course: Any, state: dict[str, Any], students: list[str], notes: list[str],
                  noted_entries: list[Any]) -> dict[str, Path]:
    points, manual = _points(course)
    known = state.get("students", {})
    # Exactly the class being graded: students of earlier runs who are not in these submissions
    # stay in the gradebook and the saved state, not in this class's table.
    everyone = sorted(set(students))
    known = {student: record for student, record in known.items() if student in everyone}
    scores = _gradebook_scores(course, everyone)
    rows = []
    for student in everyone:
        record = known.get(student, {})
        row_scores = scores.get(student, {})
        status = record.get("status", "error")
        reasons = list(record.get("reasons", []))
        if student not in known:
            reasons.append("not graded")
        per_question: dict[str, float | str] = {}
        for question in points:
            value = row_scores.get(question, 0.0 if question not in manual else None)
            per_question[question] = BY_HAND if value is None else round(value, 3)
        pending = sum(value == BY_HAND for value in per_question.values())
        rows.append({"student_id": student, **per_question,
                     "total": round(sum(v for v in per_question.values() if isinstance(v, float)), 3),
                     "max_score": sum(points.values()), "to_grade_by_hand": pending,
                     "status": status, "reasons": " | ".join(reasons)})
    grades = course.out / "grades.csv"
    with open(grades, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, ["student_id", *points, "total", "max_score", "to_grade_by_hand", "status",
                                         "reasons"])
        writer.writeheader()
        writer.writerows(rows)
    report = course.out / "report.html"
    report.write_text(_html(course, points, manual, rows, known, notes), encoding="utf-8")
    return {"grades": grades, "report": report}


def _histogram(values: list[float], maximum: float, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(4.2, 2.4), dpi=100)
    bins = min(12, max(int(maximum * 2) + 1, 2))
    axes.hist(values, bins=bins, range=(0, maximum if maximum > 0 else 1), color="#4c72b0", edgecolor="white")
    axes.set_xlabel("points")
    axes.set_ylabel("students")
    from matplotlib.ticker import MaxNLocator

    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_title(title, fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _html(course: Any, points: dict[str, float], manual: set[str], rows: list[dict], known: dict[str, Any],
          notes: list[str]) -> str:
    esc = html.escape
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Grades: {esc(course.assignment)}</title>",
             "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}"
             ".error{background:#fee}</style></head><body>",
             f"<h1>Assignment {esc(course.assignment)}</h1>"]
    totals = [row["total"] for row in rows]
    maximum = sum(points.values())
    if totals:
        mean = sum(totals) / len(totals)
        waiting = sum(row[question] == BY_HAND for row in rows for question in manual)
        pending = f" ({waiting} written answers still to grade by hand count in it as nothing yet)" \
            if waiting else ""
        parts.append(f"<p>{len(rows)} students, mean total {mean:.2f} of {maximum:g}{pending}; "
                     f"{sum(row['status'] != 'graded' for row in rows)} with an error.</p>")
        parts.append(f"<img alt='distribution of totals' src='data:image/png;base64,"
                     f"{_histogram(totals, maximum, 'Total')}'>")
    if notes:
        parts.append("<h2>About the submissions</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    parts += _mistakes_table(known)
    for question, worth in points.items():
        waiting = sum(row[question] == BY_HAND for row in rows)
        if question in manual and waiting:
            parts.append(f"<h2>{esc(question)} ({worth:g} points, graded by hand)</h2>")
            parts.append(f"<p>{waiting} of {len(rows)} answers wait for a grader (formgrader, or "
                         "<code>nbgrader formgrader</code>); they count as not yet graded, not as zero.</p>")
            continue
        values = [row[question] if isinstance(row[question], float) else 0.0 for row in rows]
        failures: Counter[str] = Counter()
        for record in known.values():
            # "probe: what went wrong": count students per kind of failure, whatever the probe.
            kinds = {message.split(": ", 1)[-1] for message in record.get("messages", {}).get(question, [])}
            for kind in kinds:
                failures[kind] += 1
        parts.append(f"<h2>{esc(question)} ({worth:g} points)</h2>")
        full = sum(value >= worth - 1e-9 for value in values)
        parts.append(f"<p>{full} of {len(values)} students earned full points.</p>")
        parts.append(f"<img alt='score distribution of {esc(question)}' src='data:image/png;base64,"
                     f"{_histogram(values, worth, question)}'>")
        if failures:
            parts.append("<p>Most frequent failures:</p><ol>")
            parts += [f"<li>{esc(message)} <em>({count} student{'s' if count > 1 else ''})</em></li>"
                      for message, count in failures.most_common(8)]
            parts.append("</ol>")
    parts.append("<h2>Students</h2><table><tr><th>student</th><th>total</th><th>status</th><th>reasons</th></tr>")
    for row in rows:
        css = " class='error'" if row["status"] != "graded" else ""
        parts.append(f"<tr{css}><td>{esc(row['student_id'])}</td><td>{row['total']:g}</td>"
                     f"<td>{esc(row['status'])}</td><td>{esc(row['reasons'])}</td></tr>")
    parts.append("</table></body></html>")
    return "\n".join(parts)


def _mistakes_table(known: dict[str, Any]) -> list[str]:
    """Each named mistake once per student, with the test cells it cost, most frequent first."""
    students: dict[str, set[str]] = {}
    cells: dict[str, set[str]] = {}
    for student, record in known.items():
        for grade_id, names in record.get("mistakes", {}).items():
            for name in names:
                students.setdefault(name, set()).add(student)
                cells.setdefault(name, set()).add(grade_id)
    if not students:
        return []
    esc = html.escape
    rows = sorted(students, key=lambda name: (-len(students[name]), name))
    parts = ["<h2>Named mistakes</h2><table><tr><th>students</th><th>mistake</th><th>test cells it cost</th></tr>"]
    parts += [f"<tr><td>{len(students[name])}</td><td>{esc(name)}</td><td>{esc(', '.join(sorted(cells[name])))}</td>"
              "</tr>" for name in rows]
    parts.append("</table>")
    return parts
