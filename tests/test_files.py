"""The file helpers every layer shares (seq2seq/files.py): checked reads, atomic writes."""

import gzip
import os
import stat
from pathlib import Path

import pytest

from seq2seq import files
from seq2seq.errors import Seq2SeqError
from seq2seq.files import atomic_write, read_lines


def test_reads_plain_gzip_and_crlf_alike(tmp_path: Path) -> None:
    text = "Ein Hund läuft.\n\nZwei Katzen.\n"
    (tmp_path / "plain.txt").write_text(text, encoding="utf-8")
    (tmp_path / "crlf.txt").write_bytes(text.replace("\n", "\r\n").encode())
    (tmp_path / "zipped.gz").write_bytes(gzip.compress(text.encode()))
    (tmp_path / "gzipped_without_suffix").write_bytes(gzip.compress(text.encode()))
    expected = ["Ein Hund läuft.", "", "Zwei Katzen."]
    for name in ("plain.txt", "crlf.txt", "zipped.gz", "gzipped_without_suffix"):
        assert list(read_lines(tmp_path / name)) == expected


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(Seq2SeqError, match=r"file not found: .*nowhere\.de"):
        list(read_lines(tmp_path / "nowhere.de"))


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(Seq2SeqError, match="expected a file but found a directory"):
        list(read_lines(tmp_path))


def test_invalid_utf8_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.de"
    path.write_bytes(b"gut\nauch gut\nschlecht \xff\xfe\n")
    with pytest.raises(Seq2SeqError, match=r"bad\.de: line 3 is not valid UTF-8"):
        list(read_lines(path))


def test_truncated_gzip_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(b"line\n" * 1000)[:-20])
    with pytest.raises(Seq2SeqError, match=r"cannot read .*cut\.gz"):
        list(read_lines(path))


def test_atomic_write_replaces_the_file_whole_with_normal_permissions(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    path.write_text("old\n")
    previous = os.umask(0o027)
    try:
        with atomic_write(path) as out:
            out.write("new ü\n")
            assert path.read_text() == "old\n"  # nothing visible before the rename
    finally:
        os.umask(previous)
    assert path.read_text(encoding="utf-8") == "new ü\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # 0666 less the umask, not mkstemp's 0600
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_write_syncs_before_the_rename(tmp_path: Path, monkeypatch) -> None:
    events = []
    monkeypatch.setattr(files.os, "fsync", lambda descriptor: events.append("fsync"))
    real_replace = files.os.replace
    monkeypatch.setattr(
        files.os, "replace", lambda a, b: (events.append("rename"), real_replace(a, b))
    )
    with atomic_write(tmp_path / "out.bin", binary=True) as out:
        out.write(b"\x00\x01")
    assert events == ["fsync", "rename", "fsync"]  # the file, then the directory entry


def test_an_error_while_writing_leaves_the_old_file_and_no_debris(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    path.write_text("old\n")
    with pytest.raises(KeyboardInterrupt), atomic_write(path) as out:
        out.write("half")
        raise KeyboardInterrupt
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_a_full_disk_is_one_clear_error_and_no_debris(tmp_path: Path, monkeypatch) -> None:
    def no_space(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", no_space)
    error = r"cannot write .*out\.txt: No space left on device"
    with pytest.raises(Seq2SeqError, match=error), atomic_write(tmp_path / "out.txt") as out:
        out.write("text")
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_directory_is_named(tmp_path: Path) -> None:
    with (
        pytest.raises(Seq2SeqError, match="cannot write to /proc/none"),
        atomic_write(Path("/proc/none/out.txt")) as out,
    ):
        out.write("text")
