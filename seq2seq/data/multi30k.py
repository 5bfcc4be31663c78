"""Find, download and checksum the Multi30k corpus (task 1, raw text; Elliott et al., 2016).

Files are `<split>.<lang>.gz` as published in github.com/multi30k/dataset under
`data/task1/raw/`. A local copy is used when a directory is given or `SEQ2SEQ_MULTI30K_DIR` is
set; otherwise missing files are downloaded into the data directory and verified by SHA-256.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from seq2seq.data.corpus import CorpusFiles, ParallelCorpus
from seq2seq.errors import Seq2SeqError
from seq2seq.files import atomic_write, make_directory

BASE_URL = "https://github.com/multi30k/dataset/raw/master/data/task1/raw"
ENV_VARIABLE = "SEQ2SEQ_MULTI30K_DIR"
LANGUAGES = ("en", "de", "fr")
SPLIT_SIZES = {"train": 29_000, "val": 1_014, "test_2016_flickr": 1_000}
SPLITS = {"train": "train", "val": "val", "test": "test_2016_flickr"}  # data module's names
SHA256 = {
    "test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
    "test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
    "test_2016_flickr.fr.gz": "6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90",
    "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "train.fr.gz": "622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c",
    "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "val.fr.gz": "ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9",
}


@dataclass(frozen=True)
class Multi30k(ParallelCorpus):
    """Multi30k task 1: train (29,000 pairs), val (1,014) and test_2016_flickr (1,000), in en,
    de and fr.

    Args:
        directory: a local copy of the raw files; default `$SEQ2SEQ_MULTI30K_DIR`, else they
            are downloaded into the data directory and checked against their SHA-256 sums.
    """

    directory: str | None = None

    def splits(self, src_lang: str, tgt_lang: str, data_dir: Path) -> dict[str, list[CorpusFiles]]:
        """Train, val and test_2016_flickr for the language pair, fetched if need be."""
        corpora = multi30k_splits(src_lang, tgt_lang, self.directory, data_dir)
        return {split: [corpora[name]] for split, name in SPLITS.items()}


def multi30k_splits(
    src_lang: str,
    tgt_lang: str,
    local_dir: str | None,
    download_dir: str | Path,
    base_url: str = BASE_URL,
) -> dict[str, CorpusFiles]:
    """The `train`, `val` and `test_2016_flickr` corpora for a language pair, fetched if needed.

    `local_dir` (or else the `SEQ2SEQ_MULTI30K_DIR` variable) names a directory that must already
    hold the files; without either, they are downloaded into `download_dir/multi30k`.
    """
    for lang in (src_lang, tgt_lang):
        if lang not in LANGUAGES:
            raise Seq2SeqError(
                f"Multi30k has no language {lang!r}; choose from {', '.join(LANGUAGES)}"
            )
    if src_lang == tgt_lang:
        raise Seq2SeqError(f"source and target language are both {src_lang!r}")
    local_dir = local_dir or os.environ.get(ENV_VARIABLE) or None
    if local_dir is not None:
        directory = Path(local_dir)
        missing = [n for n in _file_names(src_lang, tgt_lang) if not (directory / n).is_file()]
        if missing:
            raise Seq2SeqError(f"Multi30k directory {directory} lacks {', '.join(missing)}")
    else:
        directory = Path(download_dir) / "multi30k"
        for name in _file_names(src_lang, tgt_lang):
            if not (directory / name).is_file():
                download(f"{base_url}/{name}", directory / name, SHA256[name])
    return {
        split: CorpusFiles(
            str(directory / f"{split}.{src_lang}.gz"), str(directory / f"{split}.{tgt_lang}.gz")
        )
        for split in SPLIT_SIZES
    }


def _file_names(src_lang: str, tgt_lang: str) -> list[str]:
    return [f"{split}.{lang}.gz" for split in SPLIT_SIZES for lang in (src_lang, tgt_lang)]


def download(url: str, destination: Path, sha256: str) -> None:
    """Fetch `url` to `destination` through `atomic_write`, kept only if the checksum matches."""
    make_directory(destination.parent)
    digest = hashlib.sha256()
    try:
        with (
            urllib.request.urlopen(url, timeout=60) as response,
            atomic_write(destination, binary=True) as out,
        ):
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
            if digest.hexdigest() != sha256:
                raise Seq2SeqError(
                    f"checksum mismatch for {url}: expected {sha256}, got {digest.hexdigest()}"
                )
    except (urllib.error.URLError, OSError) as error:
        raise Seq2SeqError(
            f"cannot download {url} ({error}); offline, set {ENV_VARIABLE} to a local copy"
        ) from error
