"""The file helpers every layer shares (seq2seq/files.py): checked reads, atomic writes."""

import gzip
import os
import stat
from pathlib import Path

import pytest

from seq2seq import files
from seq2seq.errors import Seq2SeqError
from seq2seq.files import atomic_write, read_lines


def test_reads_plain_gzip_lf_crlf_and_cr_alike(tmp_path: Path) -> None:
    text = "Ein Hund läuft.\n\nZwei Katzen.\n"
    (tmp_path / "plain.txt").write_text(text, encoding="utf-8")
    (tmp_path / "crlf.txt").write_bytes(text.replace("\n", "\r\n").encode())
    (tmp_path / "cr.txt").write_bytes(text.replace("\n", "\r").encode())
    (tmp_path / "no_last_end.txt").write_bytes(text.rstrip("\n").encode())
    (tmp_path / "zipped.gz").write_bytes(gzip.compress(text.encode()))
    (tmp_path / "gzipped_without_suffix").write_bytes(gzip.compress(text.encode()))
    expected = ["Ein Hund läuft.", "", "Zwei Katzen."]
    for path in tmp_path.iterdir():
        assert list(read_lines(path)) == expected, path.name


def test_only_lf_crlf_and_cr_end_a_line(tmp_path: Path) -> None:
    """Unicode's other line separators stay inside their line: splitting there would shift
    one side of a parallel corpus against the other."""
    path = tmp_path / "mixed.txt"
    path.write_bytes("a\u2028b\x0cc\x85d\re\r\nf\n".encode())
    assert list(read_lines(path)) == ["a\u2028b\x0cc\x85d", "e", "f"]


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


def test_atomic_write_replaces_the_file_whole_and_keeps_its_permissions(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    path.write_text("old\n")
    path.chmod(0o604)
    with atomic_write(path) as out:
        out.write("new ü\n")
        assert path.read_text() == "old\n"  # nothing visible before the rename
    assert path.read_text(encoding="utf-8") == "new ü\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o604
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_a_new_file_gets_0666_less_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        with atomic_write(tmp_path / "new.txt") as out:
            out.write("text")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o640  # not mkstemp's 0600


def test_a_symbolic_link_is_written_through(tmp_path: Path) -> None:
    (tmp_path / "real.txt").write_text("old\n")
    (tmp_path / "link.txt").symlink_to(tmp_path / "real.txt")
    with atomic_write(tmp_path / "link.txt") as out:
        out.write("new\n")
    assert (tmp_path / "link.txt").is_symlink()
    assert (tmp_path / "real.txt").read_text() == "new\n"


def test_devices_and_pipes_are_written_directly(tmp_path: Path) -> None:
    with atomic_write("/dev/null") as out:
        out.write("gone\n")
    assert Path("/dev/null").is_char_device()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with atomic_write(fifo) as out:
            out.write("through the pipe\n")
        assert os.read(reader, 100) == b"through the pipe\n"
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(fifo.stat().st_mode)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
def test_a_full_device_is_one_clear_error_and_stays_a_device() -> None:
    error = "cannot write /dev/full: No space left on device"
    with pytest.raises(Seq2SeqError, match=error), atomic_write("/dev/full") as out:
        out.write("text")
    assert Path("/dev/full").is_char_device()


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
