"""Corpora as tab-separated files: one pair a line, `source<TAB>target`, plain or gzipped UTF-8.

The rest of the data pipeline reads line-aligned file pairs, so each file is split once into a
source and a target file under `data_dir/tsv/<key>/`; the key follows the file's path, size and
modification time, so an edited file is split again and an unchanged one is not.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from seq2seq.data.corpus import CorpusFiles, Files, upsampled
from seq2seq.errors import Seq2SeqError
from seq2seq.files import atomic_write, check_file, make_directory, read_lines


@dataclass(frozen=True)
class Tsv(Files):
    """A user's own corpora as TSV files: one pair a line, source and target separated by one
    tab (a line with another number of fields is an error naming the file and the line). The
    settings are Files', with files where Files takes path prefixes.

    Args:
        train: training files, mixed as `upsample` says.
        val: validation file.
        test: test file.
        upsample: how many times each training file is repeated (default once each): the way
            to weigh a small in-domain corpus against a large general one.
    """

    def splits(self, src_lang: str, tgt_lang: str, data_dir: Path) -> dict[str, list[CorpusFiles]]:
        """Every file split into a source and a target file (once), training files repeated."""
        if not self.train:
            raise Seq2SeqError("Tsv needs at least one training file (train)")
        split = {path: split_tsv(path, src_lang, tgt_lang, data_dir) for path in self._paths()}
        corpora = {"train": upsampled([split[p] for p in self.train], self.upsample)}
        corpora |= {name: [split[p]] for name, p in (("val", self.val), ("test", self.test)) if p}
        return corpora

    def _paths(self) -> list[str]:
        return [*self.train, *(path for path in (self.val, self.test) if path)]


def split_tsv(path: str, src_lang: str, tgt_lang: str, data_dir: Path) -> CorpusFiles:
    """The line-aligned source and target files of the TSV file `path`, written if need be."""
    status = check_file(path).stat()
    key = f"{Path(path).resolve()}|{status.st_size}|{status.st_mtime_ns}"
    directory = Path(data_dir) / "tsv" / hashlib.sha256(key.encode()).hexdigest()[:24]
    files = CorpusFiles(str(directory / f"pairs.{src_lang}"), str(directory / f"pairs.{tgt_lang}"))
    if not (directory / "ready").is_file():
        make_directory(directory)
        with atomic_write(files.src) as src_out, atomic_write(files.tgt) as tgt_out:
            for number, line in enumerate(read_lines(path), start=1):
                fields = line.split("\t")
                if len(fields) != 2:
                    raise Seq2SeqError(
                        f"{path}: line {number} has {len(fields)} tab-separated fields, not 2"
                    )
                src_out.write(fields[0] + "\n")
                tgt_out.write(fields[1] + "\n")
        with atomic_write(directory / "ready") as out:
            out.write(path + "\n")
    return files
