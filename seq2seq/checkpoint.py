"""The checkpoint layout: written atomically, read safely, turned back into a model, no Lightning.

A checkpoint is the dict Lightning saves for `TranslationModule`, with plain types only:
- `state_dict`: the module's tensors, the model's under `model.`;
- `hyper_parameters`: the module's arguments: `architecture` (Seq2SeqConfig's fields) and
  `test_search` (SearchOptions' fields: how the run tested, and what translating defaults to);
- `seq2seq_tokenizer`: the SentencePiece models as bytes, `{"src": ..., "tgt": ...}`.

Saving goes through `atomic_write` (files.py): a process killed mid-save leaves the previous file
whole. Loading uses `torch.load(weights_only=True)`: a checkpoint carrying a pickled object that
would run code is refused before anything in it runs. Every way a file can be wrong (missing,
truncated, not a checkpoint, another model's) is a `Seq2SeqError`.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import torch

from seq2seq.data.tokenizer import Tokenizer
from seq2seq.decoding.search import SearchOptions
from seq2seq.errors import Seq2SeqError
from seq2seq.files import atomic_write, check_file, make_directory
from seq2seq.model.seq2seq import Seq2Seq, Seq2SeqConfig

TOKENIZER_KEY = "seq2seq_tokenizer"
MODEL_PREFIX = "model."  # TranslationModule keeps the Seq2Seq model as `self.model`
# checkpoints from before schedules were classes: `scheduler: budget` and flat settings
LEGACY_SCHEDULES = {
    "budget": (
        "Budget",
        {
            "warmup_steps": "warmup_steps",
            "decay_fraction": "decay_fraction",
            "min_learning_rate": "min_learning_rate",
        },
    ),
    "plateau": (
        "Plateau",
        {
            "factor": "plateau_factor",
            "patience": "plateau_patience",
            "min_learning_rate": "min_learning_rate",
        },
    ),
    "inverse_sqrt": ("InverseSqrt", {"warmup_steps": "warmup_steps"}),
    "none": ("Constant", {}),
}
# the output layer's scored words (Decoder.target_words): checkpoints before it scored every word
SCORED_WORDS = "decoder.target_words"
LEGACY_KEYS = (
    "plateau_factor",
    "plateau_patience",
    "warmup_steps",
    "decay_fraction",
    "min_learning_rate",
    "max_nonfinite_steps",
)


class LoadedModel(NamedTuple):
    """What a checkpoint holds for translating."""

    model: Seq2Seq
    tokenizer: Tokenizer
    search: SearchOptions  # how the run tested: the default for translating


def save_checkpoint(checkpoint: dict[str, Any], path: str | Path) -> None:
    """torch.save `checkpoint` to `path` atomically (temporary file, fsync, rename).

    Serialized in memory first: torch's zip writer reports a full disk as a RuntimeError about
    stream positions, a plain write reports it as what it is.
    """
    path = Path(path)
    make_directory(path.parent)
    serialized = io.BytesIO()
    torch.save(checkpoint, serialized)
    with atomic_write(path, binary=True) as out:
        out.write(serialized.getbuffer())


def load_checkpoint(
    path: str | Path, map_location: Any = "cpu", mmap: bool = False
) -> dict[str, Any]:
    """The checkpoint at `path`, loaded with weights_only=True; a clear error if it cannot be.
    `mmap`: tensors are read from the file only when touched (cheap reads of metadata)."""
    checkpoint = load_torch_file(path, "checkpoint", map_location, mmap)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise Seq2SeqError(f"{path} is not a seq2seq checkpoint (no state_dict)")
    return checkpoint


def load_torch_file(
    path: str | Path, what: str, map_location: Any = "cpu", mmap: bool = False
) -> Any:
    """What torch.save wrote to `path` (a `what`: checkpoint, shortlist), loaded with
    weights_only=True: tensors and plain values only; a one-line error if it cannot be."""
    check_file(path)
    if not zipfile.is_zipfile(path):  # torch.save writes zip archives; a cut one has no index
        raise Seq2SeqError(f"cannot read {what} {path}: truncated or not a {what}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        raise Seq2SeqError(
            f"refusing to load {path}: it holds Python objects other than tensors and plain"
            f" values, which could run code (only weights_only {what}s are accepted)"
        ) from error
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as error:
        raise Seq2SeqError(f"cannot read {what} {path}: truncated or not a {what}") from error


def load_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """The model, tokenizer and test search options of the checkpoint at `path`, on `device`."""
    loaded = model_of(load_checkpoint(path), path)
    return loaded._replace(model=loaded.model.to(device))


def checkpoint_facts(path: str | Path) -> dict[str, Any]:
    """A checkpoint's step, its run's last validation BLEU (from the learning curves the run
    kept) and its data settings."""
    checkpoint = load_checkpoint(path, mmap=True)
    curves = (checkpoint.get("callbacks") or {}).get("LearningCurves") or {}
    bleu = curves.get("val/bleu") or {}
    return {
        "path": str(path),
        "step": checkpoint.get("global_step"),
        "validation_bleu": round(float(bleu[max(bleu)]), 2) if bleu else None,
        "data": checkpoint.get("datamodule_hyper_parameters") or {},
    }


def model_of(checkpoint: dict[str, Any], path: str | Path = "the checkpoint") -> LoadedModel:
    """Rebuild the model from a loaded checkpoint's hyperparameters and load its weights."""
    try:
        hyperparameters = checkpoint["hyper_parameters"]
        config = Seq2SeqConfig(**hyperparameters["architecture"])
        search = SearchOptions(**hyperparameters.get("test_search", {}))
    except (KeyError, TypeError) as error:
        raise Seq2SeqError(f"{path} is not a seq2seq checkpoint ({error})") from error
    tokenizer = tokenizer_of(checkpoint)
    model = Seq2Seq(config)
    load_weights(model, checkpoint, path)
    return LoadedModel(model.eval(), tokenizer, search)


def load_weights(model: Seq2Seq, checkpoint: dict[str, Any], path: str | Path) -> None:
    """Put a loaded checkpoint's model weights into `model`: one-line errors when the tensors
    differ in names or sizes, or are not finite."""
    state = {
        name.removeprefix(MODEL_PREFIX): tensor
        for name, tensor in checkpoint["state_dict"].items()
        if name.startswith(MODEL_PREFIX)
    }
    own = model.state_dict()
    complete_state(state, own)
    if set(state) != set(own):
        odd = sorted(set(state) ^ set(own))
        raise Seq2SeqError(
            f"{path} does not fit this model: {', '.join(odd[:3])} in only one of them"
            " (another number of layers or another architecture?)"
        )
    check_fits(state, own)
    check_finite(state, doing=f"load {path}: it holds")
    model.load_state_dict(state)


def current_hyperparameters(hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's module arguments as this version takes them: a schedule named by a string
    with flat settings (checkpoints before schedules were classes) becomes its class."""
    if not isinstance(hyperparameters.get("scheduler"), str):
        return hyperparameters
    name, settings = LEGACY_SCHEDULES[hyperparameters["scheduler"]]
    current = {k: v for k, v in hyperparameters.items() if k not in LEGACY_KEYS}
    init_args = {
        new: hyperparameters[old] for new, old in settings.items() if old in hyperparameters
    }
    current["scheduler"] = {"class_path": f"seq2seq.schedules.{name}", "init_args": init_args}
    return current


def complete_state(
    saved: dict[str, torch.Tensor], own: dict[str, torch.Tensor], prefix: str = ""
) -> None:
    """Add to a saved state dict (the model's keys under `prefix`) what checkpoints of earlier
    versions lack: the scored words' mask, all True (they scored every word)."""
    key = prefix + SCORED_WORDS
    if key not in saved and key in own:
        saved[key] = torch.ones_like(own[key])


def check_fits(saved: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> None:
    """A clear error when saved tensors have other shapes than the model's own (same names)."""
    for name, tensor in saved.items():
        if name in own and own[name].shape != tensor.shape:
            raise Seq2SeqError(
                f"the checkpoint does not fit this model: {name} is {tuple(tensor.shape)}"
                f" there and {tuple(own[name].shape)} here (another vocabulary or size?)"
            )


def check_finite(state_dict: dict[str, torch.Tensor], doing: str = "save") -> None:
    """A clear error for non-finite weights, before one is saved (`doing`: save) or used
    (load)."""
    broken = [k for k, v in state_dict.items() if not v.isfinite().all()]
    if broken:
        raise Seq2SeqError(f"refusing to {doing} non-finite weights ({', '.join(broken[:3])})")


def store_tokenizer(checkpoint: dict[str, Any], tokenizer: Tokenizer) -> None:
    """Embed the SentencePiece models, so that the checkpoint alone is enough to translate."""
    checkpoint[TOKENIZER_KEY] = {"src": tokenizer.src_model, "tgt": tokenizer.tgt_model}


def tokenizer_of(checkpoint: dict[str, Any], expected: Tokenizer | None = None) -> Tokenizer:
    """The tokenizer a checkpoint embeds; a clear error if it is not the `expected` one (the
    data's, when a run resumes or evaluates on its data)."""
    if TOKENIZER_KEY not in checkpoint:
        raise Seq2SeqError("not a seq2seq checkpoint: it holds no tokenizer")
    models = checkpoint[TOKENIZER_KEY]
    tokenizer = Tokenizer(models["src"], models["tgt"])
    if expected is not None and expected.fingerprint != tokenizer.fingerprint:
        raise Seq2SeqError(
            "the checkpoint was trained with another tokenizer than this data's: use the"
            " data settings (corpus, vocab_size, data_dir) it was trained with"
        )
    return tokenizer
