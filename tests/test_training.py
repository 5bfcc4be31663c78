"""Training through `train.py`'s command line: learning, resumption, self-contained checkpoints."""

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from seq2seq import lightning_cli
from seq2seq.data.batch import collate
from seq2seq.decoding.search import SearchOptions
from seq2seq.lightning_cli import build_cli, main
from seq2seq.lit_module import TranslationModule
from tests.training_helpers import reversal_corpus, tiny_run_args

QUICK_STEPS = 200  # about one epoch of Multi30k at the quick config's batch size
QUICK_MIN_BLEU = 3.5  # measured 7.00 after 200 steps; the broken-init model scored 0.0


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return reversal_corpus(tmp_path / "corpus")


def exact_match(module: TranslationModule, corpus: Path, split: str = "val") -> float:
    sources = (corpus / f"{split}.de").read_text().splitlines()
    targets = (corpus / f"{split}.en").read_text().splitlines()
    ids = module.tokenizer.encode_src(sources)
    batch = collate(
        [(torch.tensor(s).numpy(), torch.tensor([]).numpy(), i) for i, s in enumerate(ids)]
    )
    module.eval()
    hypotheses = module.translate_batch(batch, SearchOptions(beam_size=1))
    return sum(h == t for h, t in zip(hypotheses, targets, strict=True)) / len(targets)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_learns_to_reverse_word_sequences(precision: str, corpus: Path, tmp_path: Path) -> None:
    """A learning test: at least 95% exact match with greedy decoding within 600 updates, in
    fp32 and under bf16 autocast (with the fused optimizer and gradient clipping of both)."""
    settings = {
        "trainer.max_steps": 600,
        "trainer.limit_val_batches": 0,
        "trainer.precision": precision,
    }
    main(["fit", *tiny_run_args(corpus, tmp_path, **settings)])
    module = TranslationModule.load_from_checkpoint(tmp_path / "run/checkpoints/last.ckpt")
    assert exact_match(module, corpus) >= 0.95


@pytest.mark.parametrize("fast_bf16", [True, False])
def test_bf16_on_a_cpu_without_fast_bf16_is_warned_about(
    fast_bf16: bool, corpus: Path, tmp_path: Path, monkeypatch, recwarn
) -> None:
    monkeypatch.setattr(lightning_cli, "has_fast_bf16", lambda device: fast_bf16)
    args = tiny_run_args(corpus, tmp_path, **{"trainer.precision": "bf16-mixed"})
    build_cli(args, run=False)
    warned = [w for w in recwarn if "bf16 is emulated here" in str(w.message)]
    assert len(warned) == (0 if fast_bf16 else 1)


def test_budget_schedule_anneals_to_the_floor_at_the_last_update(
    corpus: Path, tmp_path: Path
) -> None:
    rates = tmp_path / "rates.json"
    settings = {
        "trainer.max_steps": 20,
        "trainer.limit_val_batches": 0,
        "model.learning_rate": 0.005,
        "model.scheduler": "budget",
        "model.warmup_steps": 0,
        "model.decay_fraction": 0.5,
        "model.min_learning_rate": 0.0005,
    }
    main(
        [
            "fit",
            *tiny_run_args(corpus, tmp_path, **settings),
            "--trainer.callbacks+=tests.training_helpers.RecordLearningRates",
            f"--trainer.callbacks.path={rates}",
        ]
    )
    used = {int(step): rate for step, rate in json.loads(rates.read_text()).items()}
    # update k runs at the rate set when k of the 20 updates were spent: the peak for the first
    # half, then a straight line from the peak towards 0.0005, which update 20 would reach
    expected = {k: 0.005 * (0.1 + 0.9 * min(1.0, (1 - k / 20) / 0.5)) for k in range(20)}
    assert used == pytest.approx(expected)


@pytest.mark.parametrize("scheduler", ["inverse_sqrt", "budget"])
def test_resumed_run_matches_an_uninterrupted_one_step_for_step(
    corpus: Path, tmp_path: Path, scheduler: str
) -> None:
    record = "tests.training_helpers.RecordLosses"

    def fit(work: Path, name: str, *extra: str) -> dict[str, float]:
        args = tiny_run_args(
            corpus,
            work,
            **{
                "trainer.max_steps": 12,
                "trainer.limit_val_batches": 0,
                "model.architecture.dropout": 0.3,
                "model.architecture.recurrent_dropout": 0.2,
                "model.scheduler": scheduler,
                "model.warmup_steps": 5,
                "model.decay_fraction": 0.5,
            },
        )
        losses = work / f"losses_{name}.json"
        main(
            [
                "fit",
                *args,
                f"--trainer.callbacks+={record}",
                f"--trainer.callbacks.path={losses}",
                *extra,
            ]
        )
        return json.loads(losses.read_text())

    straight = fit(tmp_path / "straight", "straight")
    # interrupted mid-epoch (an epoch here has about 40 batches), the budget still 12 updates
    stop = ("--trainer.callbacks+=tests.training_helpers.StopAt", "--trainer.callbacks.step=5")
    fit(tmp_path / "resumed", "first", *stop)
    resumed = fit(tmp_path / "resumed", "second", "--ckpt_path=last")
    assert sorted(resumed, key=int) == [str(step) for step in range(6, 13)]
    for step, loss in resumed.items():
        assert loss == pytest.approx(straight[step], rel=1e-6, abs=1e-6)
    checkpoint = torch.load(tmp_path / "resumed/run/checkpoints/last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 12


def test_checkpoint_alone_translates(corpus: Path, tmp_path: Path) -> None:
    main(
        [
            "fit",
            *tiny_run_args(
                corpus, tmp_path, **{"trainer.max_steps": 30, "trainer.limit_val_batches": 0}
            ),
        ]
    )
    checkpoint = tmp_path / "run/checkpoints/last.ckpt"
    before = exact_match(TranslationModule.load_from_checkpoint(checkpoint), corpus, "test")
    kept = tmp_path / "kept"
    shutil.copytree(corpus, kept)
    shutil.rmtree(tmp_path / "data")
    shutil.rmtree(corpus)
    module = TranslationModule.load_from_checkpoint(checkpoint)
    assert module.tokenizer is not None
    assert exact_match(module, kept, "test") == before


def test_validate_and_test_subcommands_report_bleu(corpus: Path, tmp_path: Path, capsys) -> None:
    main(["fit", *tiny_run_args(corpus, tmp_path, **{"trainer.max_steps": 20})])
    metrics = tmp_path / "metrics.json"
    for command in ("validate", "test"):
        main(
            [
                command,
                *tiny_run_args(corpus, tmp_path),
                "--ckpt_path=last",
                "--trainer.callbacks+=tests.training_helpers.SaveMetrics",
                f"--trainer.callbacks.path={metrics}",
            ]
        )
    output = capsys.readouterr().out
    assert "test/bleu" in output and "test/chrf" in output
    assert 0.0 <= json.loads(metrics.read_text())["val/bleu"] <= 100.0


def test_validation_during_fit_scores_the_current_weights(corpus: Path, tmp_path: Path) -> None:
    """The scores logged while training equal those of the saved weights validated afresh: no
    cache in the search may outlive an update (the sanity check decodes the initial weights)."""
    during, afresh = tmp_path / "during.json", tmp_path / "afresh.json"
    saving = "--trainer.callbacks+=tests.training_helpers.SaveMetrics"
    main(
        [
            "fit",
            *tiny_run_args(
                corpus,
                tmp_path,
                **{"trainer.max_epochs": 1, "trainer.num_sanity_val_steps": 1},
            ),
            saving,
            f"--trainer.callbacks.path={during}",
        ]
    )
    main(
        [
            "validate",
            *tiny_run_args(corpus, tmp_path),
            "--ckpt_path=last",
            saving,
            f"--trainer.callbacks.path={afresh}",
        ]
    )
    during_fit, validated = json.loads(during.read_text()), json.loads(afresh.read_text())
    assert validated["val/chrf"] > 0
    for name in ("val/bleu", "val/chrf"):
        assert during_fit[name] == pytest.approx(validated[name], abs=1e-4), name


def test_print_config_round_trips(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", "configs/quick.yaml", "--print_config"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "decoder_hidden_size: 256" in printed
    assert "src_vocab_size" not in printed  # derived: linked from data.vocab_size
    (tmp_path / "printed.yaml").write_text(printed)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(tmp_path / "printed.yaml"), "--print_config"])
    assert exit_info.value.code == 0


def test_large_config_overrides_only_the_sizes(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "fit",
                "--config",
                "configs/multi30k_de_en.yaml",
                "--config",
                "configs/large.yaml",
                "--print_config",
            ]
        )
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    architecture = printed["model"]["architecture"]
    assert (architecture["decoder_layers"], architecture["decoder_hidden_size"]) == (2, 1024)
    assert (architecture["encoder_layers"], architecture["encoder_hidden_size"]) == (2, 512)
    assert architecture["layer_norm"] and architecture["dropout"] == 0.2  # the reference's
    assert printed["trainer"]["default_root_dir"] == "runs/large"


def test_misspelt_option_is_refused(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", "configs/quick.yaml", "--model.architecture.hiden_size=3"])
    assert exit_info.value.code != 0
    assert "hiden_size" in capsys.readouterr().err


def test_bad_data_is_one_line_and_exit_1(tmp_path: Path, capsys) -> None:
    (tmp_path / "t.de").write_text("a\nb\n")
    (tmp_path / "t.en").write_text("a\n")
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "fit",
                "--data.corpus=files",
                f"--data.train=[{tmp_path / 't'}]",
                f"--data.data_dir={tmp_path / 'w'}",
                f"--trainer.default_root_dir={tmp_path / 'r'}",
            ]
        )
    assert exit_info.value.code == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1].startswith("train.py: error: line counts differ")
    assert not any("Traceback" in line for line in error)


@pytest.mark.slow
def test_quick_config_learns_multi30k(multi30k_dir: Path, tmp_path: Path) -> None:
    """A bounded run of configs/quick.yaml reaches a validation BLEU no untrained model gets."""
    metrics = tmp_path / "metrics.json"
    main(
        [
            "fit",
            "--config",
            "configs/quick.yaml",
            f"--data.multi30k_dir={multi30k_dir}",
            f"--data.data_dir={tmp_path / 'data'}",
            f"--trainer.default_root_dir={tmp_path / 'run'}",
            f"--trainer.max_steps={QUICK_STEPS}",
            f"--trainer.val_check_interval={QUICK_STEPS}",
            "--trainer.enable_progress_bar=false",
            "--test_after_fit=false",
            "--trainer.callbacks+=tests.training_helpers.SaveMetrics",
            f"--trainer.callbacks.path={metrics}",
        ]
    )
    bleu = json.loads(metrics.read_text())["val/bleu"]
    assert bleu >= QUICK_MIN_BLEU, f"validation BLEU {bleu:.2f} after {QUICK_STEPS} steps"


def test_predict_translates_every_test_sentence(corpus: Path, tmp_path: Path) -> None:
    import lightning as L

    from seq2seq.datamodule import TranslationDataModule

    main(
        [
            "fit",
            *tiny_run_args(
                corpus, tmp_path, **{"trainer.max_steps": 10, "trainer.limit_val_batches": 0}
            ),
        ]
    )
    main(["predict", *tiny_run_args(corpus, tmp_path), "--ckpt_path=last"])  # the command runs
    module = TranslationModule.load_from_checkpoint(tmp_path / "run/checkpoints/last.ckpt")
    datamodule = TranslationDataModule(
        corpus="files",
        train=[str(corpus / "train")],
        val=str(corpus / "val"),
        test=str(corpus / "test"),
        data_dir=str(tmp_path / "data"),
        vocab_size=40,
        byte_fallback=False,
        max_tokens=400,
        eval_max_tokens=300,
    )
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    batches = trainer.predict(module, datamodule=datamodule)
    predictions = dict(pair for batch in batches for pair in batch)
    assert sorted(predictions) == list(range(100))
    assert all(isinstance(text, str) for text in predictions.values())
