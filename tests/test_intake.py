"""How the intake reads a class as the LMS or the OS hands it over: ids, odd files, odd zips, the CLI's message."""

from __future__ import annotations

import json
import zipfile

from autograder import cli
from autograder.intake import check_notebook, collect, student_id
from tests.fake_class import as_zip, notebook, write


def test_a_student_id_typed_in_decomposed_unicode_is_the_same_student_as_in_composed_form():
    assert student_id("Jose\u0301 Nu\u0301n\u0303ez") == student_id("Jos\u00e9 N\u00fa\u00f1ez") == "Jos\u00e9_N\u00fa\u00f1ez"


def test_a_long_student_id_is_kept_whole_up_to_100_characters():
    assert student_id("a" * 40) == "a" * 40
    assert student_id("b" * 150) == "b" * 100


def test_a_notebook_saved_with_a_byte_order_mark_is_read(tmp_path):
    data = b"\xef\xbb\xbf" + json.dumps(notebook()).encode("utf-8")
    assert check_notebook(data) == ""
    write(data, tmp_path / "subs" / "ann" / "bn_math.ipynb")
    write(notebook(), tmp_path / "subs" / "bo" / "bn_math.ipynb")
    entries, _ = collect(tmp_path / "subs", "bn_math", ["bn_math"])
    ann = {e.student: e for e in entries}["ann"]
    assert not ann.problem and ann.notebooks["bn_math"] == data


def test_a_second_file_for_the_same_notebook_is_noted_and_the_first_kept(tmp_path):
    first = write(notebook(), tmp_path / "subs" / "ann" / "bn_math (1).ipynb")  # sorts before bn_math.ipynb
    write(notebook(solved=False), tmp_path / "subs" / "ann" / "bn_math.ipynb")
    write(notebook(), tmp_path / "subs" / "bo" / "bn_math.ipynb")
    entries, _ = collect(tmp_path / "subs", "bn_math", ["bn_math"])
    ann = {e.student: e for e in entries}["ann"]
    assert ann.notebooks["bn_math"] == first.read_bytes()
    assert any("a second file for bn_math.ipynb; ignored" in note for note in ann.notes)


def test_a_zip_with_utf8_names_not_flagged_utf8_keeps_the_accented_names(tmp_path):
    # Windows tools (and Python before 3.x) store UTF-8 names without the UTF-8 flag: zipfile reads them as cp437.
    archive = as_zip({"JosXY/bn_math.ipynb": notebook(), "bo/bn_math.ipynb": notebook()}, tmp_path / "c.zip")
    archive.write_bytes(archive.read_bytes().replace(b"JosXY", "Jos\u00e9".encode("utf-8")))
    with zipfile.ZipFile(archive) as zipped:
        assert all(info.flag_bits & 0x800 == 0 for info in zipped.infolist())
    entries, _ = collect(archive, "bn_math", ["bn_math"])
    assert sorted(e.student for e in entries) == ["Jos\u00e9", "bo"]


def test_a_class_folder_holding_one_students_folder_is_not_taken_for_that_students_notebook(tmp_path):
    write(notebook(), tmp_path / "subs" / "ann" / "bn_math.ipynb")
    entries, _ = collect(tmp_path / "subs", "bn_math", ["bn_math"])
    assert [(e.student, list(e.notebooks), e.problem) for e in entries] == [("ann", ["bn_math"], "")]


def test_macosx_folders_of_a_class_unzipped_on_a_mac_are_not_students(tmp_path):
    for student in ("ann", "bo"):
        write(notebook(), tmp_path / "subs" / student / "bn_math.ipynb")
        write(b"\x00\x05\x16\x07 resource fork", tmp_path / "subs" / "__MACOSX" / student / "._bn_math.ipynb")
    entries, _ = collect(tmp_path / "subs", "bn_math", ["bn_math"])
    assert sorted(e.student for e in entries) == ["ann", "bo"]


def test_the_command_line_reports_a_damaged_zip_in_one_line_with_exit_code_2(tmp_path, capsys):
    archive = as_zip({"ann/bn_math.ipynb": notebook(), "bo/bn_math.ipynb": notebook()}, tmp_path / "c.zip")
    data = bytearray(archive.read_bytes())
    data[len(data) // 3] ^= 0xFF  # one flipped byte inside the first member's compressed data
    archive.write_bytes(bytes(data))
    code = cli.main(["grade", "bn_math", str(archive), "--db", f"sqlite:///{tmp_path}/gradebook.db",
                     "--out", str(tmp_path / "out"), "--quiet", "--no-feedback"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and "damaged zip archive" in err
    assert err.count("\n") == 1 and "Traceback" not in err
