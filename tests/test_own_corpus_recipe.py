"""The README's "Train on your own corpus" recipe, run as written on a small corpus of one's own."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.training_helpers import reversal_corpus

REPO = Path(__file__).resolve().parents[1]
SMALL = {  # what a user with a tiny corpus and little time would write into the copied overlay
    "data": {
        "vocab_size": 40,
        "byte_fallback": False,
        "max_tokens": 400,
        "eval_max_tokens": 300,
        "encode_workers": 1,
    },
    "model": {
        "architecture": {
            "embedding_size": 32,
            "encoder_hidden_size": 32,
            "decoder_hidden_size": 64,
            "attention_size": 32,
        }
    },
    "trainer": {"max_epochs": 1, "accelerator": "cpu", "enable_progress_bar": False},
}


def recipe() -> list[str]:
    """The commands of the section's first code block."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Train on your own corpus\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("\n\n    ", 1)[1]
    commands = []
    for line in ("    " + block).splitlines():
        if not line.startswith("    "):
            break
        commands.append(line[4:].split("  #")[0].strip())
    return commands


def edited(overlay: Path) -> None:
    """The copied overlay with the sizes of SMALL, its paths and languages kept."""
    config = yaml.safe_load(overlay.read_text(encoding="utf-8"))
    for section, settings in SMALL.items():
        config.setdefault(section, {})
        for key, value in settings.items():
            config[section][key] = value
    overlay.write_text(yaml.safe_dump(config), encoding="utf-8")


def test_the_own_corpus_recipe_runs_as_written(tmp_path: Path) -> None:
    source = reversal_corpus(tmp_path / "generated", train_pairs=2000)
    (tmp_path / "corpora").mkdir()
    for split, name in (("train", "train"), ("val", "dev"), ("test", "test")):
        for lang in ("de", "en"):
            shutil.copy(source / f"{split}.{lang}", tmp_path / "corpora" / f"{name}.{lang}")
    (tmp_path / "configs").symlink_to(REPO / "configs")
    copy, *rest = recipe()
    assert copy.startswith("cp configs/own_corpus.yaml my_run.yaml"), copy
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}

    def shell(script: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", "-euc", script],
            cwd=tmp_path,
            env=environment,
            capture_output=True,
            text=True,
            timeout=600,
        )

    assert shell(copy).returncode == 0
    edited(tmp_path / "my_run.yaml")
    completed = shell("\n".join(rest))
    console = completed.stdout + completed.stderr
    assert completed.returncode == 0, console[-3000:]

    run = tmp_path / "runs/own_corpus"
    for artefact in ("train.log", "metrics.csv", "learning_curves.png", "checkpoints/last.ckpt"):
        assert (run / artefact).is_file(), artefact
    assert (run / "checkpoints/best.ckpt").is_symlink()
    assert list((run / "validation").glob("step-*.txt"))
    hypotheses = (tmp_path / "test.hyp.en").read_text(encoding="utf-8").splitlines()
    assert len(hypotheses) == len((tmp_path / "corpora/test.de").read_text().splitlines())
    assert '"src_vocab_size"' in console  # prepare's statistics
    assert console.count("test/bleu") >= 2  # the test after fit, and `train test`
    assert "BLEU|" in console and "chrF2|" in console  # evaluate's sacreBLEU lines
