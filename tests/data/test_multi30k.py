import shutil
from pathlib import Path

import pytest

from seq2seq.data.corpus import count_aligned_pairs
from seq2seq.data.multi30k import ENV_VARIABLE, SPLIT_SIZES, multi30k_splits
from seq2seq.errors import Seq2SeqError


def test_local_copy_has_the_published_pair_counts(multi30k_dir: Path) -> None:
    splits = multi30k_splits("de", "en", str(multi30k_dir), download_dir="unused")
    assert {split: count_aligned_pairs(files)[1] for split, files in splits.items()} == {
        "train": 29_000,
        "val": 1_014,
        "test_2016_flickr": 1_000,
    }
    assert splits["val"].src.endswith("val.de.gz")


def test_environment_variable_names_the_local_copy(
    multi30k_dir: Path, monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(ENV_VARIABLE, str(multi30k_dir))
    splits = multi30k_splits("fr", "en", None, download_dir=tmp_path)
    assert Path(splits["train"].src) == multi30k_dir / "train.fr.gz"
    assert not (tmp_path / "multi30k").exists()


def test_download_verifies_checksums(multi30k_dir: Path, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ENV_VARIABLE, raising=False)
    splits = multi30k_splits("en", "de", None, tmp_path, base_url=multi30k_dir.resolve().as_uri())
    assert {p.name for p in (tmp_path / "multi30k").iterdir()} == {
        f"{split}.{lang}.gz" for split in SPLIT_SIZES for lang in ("en", "de")
    }
    assert count_aligned_pairs(splits["val"])[1] == 1_014


def test_corrupt_download_is_refused_and_removed(
    multi30k_dir: Path, monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(ENV_VARIABLE, raising=False)
    mirror = tmp_path / "mirror"
    shutil.copytree(multi30k_dir, mirror)
    (mirror / "train.de.gz").chmod(0o644)
    (mirror / "train.de.gz").write_bytes(b"not the corpus")
    with pytest.raises(Seq2SeqError, match=r"checksum mismatch for .*train\.de\.gz"):
        multi30k_splits("de", "en", None, tmp_path / "work", base_url=mirror.as_uri())
    assert not (tmp_path / "work" / "multi30k" / "train.de.gz").exists()
    assert list((tmp_path / "work" / "multi30k").iterdir()) == []  # no temporary file either


def test_unreachable_server_points_to_the_variable(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ENV_VARIABLE, raising=False)
    with pytest.raises(Seq2SeqError, match=f"cannot download .*set {ENV_VARIABLE}"):
        multi30k_splits("de", "en", None, tmp_path, base_url=(tmp_path / "absent").as_uri())


def test_incomplete_local_directory(tmp_path: Path) -> None:
    with pytest.raises(Seq2SeqError, match=r"lacks train\.de\.gz"):
        multi30k_splits("de", "en", str(tmp_path), tmp_path)


@pytest.mark.parametrize(
    ("src", "tgt", "message"), [("de", "cs", "no language 'cs'"), ("en", "en", "both 'en'")]
)
def test_bad_language_pair(src: str, tgt: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(Seq2SeqError, match=message):
        multi30k_splits(src, tgt, str(tmp_path), tmp_path)
