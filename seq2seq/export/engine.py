"""OnnxModel: an exported model searched through ONNX Runtime, with the step API of a PyTorch
model (decoding/step_api.py), so greedy, beam and sampling search run unchanged over it.

Tensors cross to ONNX Runtime as NumPy views (no copy) and come back wrapped by
torch.from_numpy; the search itself (scores, top-k, reordering) stays in PyTorch.

Shapes: B sentences, R hypothesis rows, S source length, V' output words, and the recurrent state
(C, L, R, H) of graphs.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from seq2seq.data.tokenizer import Tokenizer
from seq2seq.errors import Seq2SeqError, one_line
from seq2seq.export import manifest
from seq2seq.export.graphs import ENCODER_INPUTS, ENCODER_OUTPUTS, STEP_INPUTS, STEP_OUTPUTS
from seq2seq.model.seq2seq import StepOutput


class OnnxState(NamedTuple):
    """The search state of an exported model: the recurrent state per hypothesis row, the
    encoder's side per sentence (rows of a sentence adjacent, as in DecoderState)."""

    state: torch.Tensor  # (C, L, R, H)
    memory: torch.Tensor  # (B, S, M)
    keys: torch.Tensor  # (B, S, A)
    padding_bias: torch.Tensor  # (B, S)

    def reorder(self, rows: torch.Tensor, sentences: torch.Tensor | None = None) -> OnnxState:
        """Hypotheses `rows` (R',) and, where sentences leave, the sentences `sentences` (B',)."""
        state = self.state.index_select(2, rows)
        if sentences is None:
            return self._replace(state=state)
        return OnnxState(
            state,
            self.memory.index_select(0, sentences),
            self.keys.index_select(0, sentences),
            self.padding_bias.index_select(0, sentences),
        )


class OnnxModel:
    """The export in `directory`, searched on CPU by ONNX Runtime with `threads` intra-op
    threads (default: torch's thread count, so both engines use the same cores).

    It is `Searchable` (decoding/search.py): encode, initial_state and step."""

    device = torch.device("cpu")

    def __init__(self, directory: str | Path, threads: int | None = None) -> None:
        import onnxruntime  # the export extra: checked by the caller for a friendly message

        self.directory = Path(directory)
        self.manifest = manifest.read(self.directory)
        self.tokenizer = Tokenizer.load(self.directory)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: no notes about the graph on stderr
        # between runs the search works in torch on the same cores: ONNX Runtime's threads
        # must sleep, not spin (spinning made greedy search 1.3x slower on 2 cores)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.encoder = _session(self.directory / manifest.ENCODER, options)
        self.decoder_step = _session(self.directory / manifest.DECODER_STEP, options)
        _check_signature(self.encoder, manifest.ENCODER, ENCODER_INPUTS, ENCODER_OUTPUTS)
        _check_signature(self.decoder_step, manifest.DECODER_STEP, STEP_INPUTS, STEP_OUTPUTS)

    def output_words(self) -> torch.Tensor:
        """(V',) the sorted target ids the exported step scores: token id i is the i-th."""
        return torch.tensor(self.manifest.output_words, dtype=torch.long)

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> OnnxState:
        """(B, S) source ids and (B,) lengths -> the state before the first target token."""
        feeds = {"src": _numpy(src), "src_lengths": _numpy(src_lengths)}
        memory, keys, padding_bias, state = self.encoder.run(None, feeds)
        tensors = (torch.from_numpy(array) for array in (state, memory, keys, padding_bias))
        return OnnxState(*tensors)

    def search_weights(self) -> None:
        """Nothing: the exported step holds its search weights."""
        return None

    def initial_state(
        self,
        encoded: OnnxState,
        search_weights: None = None,
        vocabulary: None = None,
        hypotheses: int = 1,
    ) -> OnnxState:
        """The encoder's graph already ends with the decoder's initial state; the step's graph
        scores all of `output_words()` (no `vocabulary` of a shortlist) and reads the memory
        itself for any number of `hypotheses` a sentence."""
        if vocabulary is not None:
            raise Seq2SeqError("an exported model searches its whole vocabulary: no shortlist")
        return encoded

    def step(self, state: OnnxState, tokens: torch.Tensor) -> StepOutput:
        """The search API: previous tokens (R,) -> log-probabilities (R, V'), state, attention;
        token ids and columns are positions in `output_words()`."""
        feeds = {
            "tokens": _numpy(tokens),
            "state": _numpy(state.state),
            "memory": _numpy(state.memory),
            "keys": _numpy(state.keys),
            "padding_bias": _numpy(state.padding_bias),
        }
        log_probs, next_state, attention = self.decoder_step.run(None, feeds)
        following = state._replace(state=torch.from_numpy(next_state))
        return StepOutput(torch.from_numpy(log_probs), following, torch.from_numpy(attention))


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    """A contiguous CPU tensor's NumPy view (int64 ids stay int64)."""
    return tensor.detach().contiguous().numpy()


def _session(path: Path, options):
    import onnxruntime

    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # ONNX Runtime's errors have no common base class
        raise Seq2SeqError(f"ONNX Runtime cannot load {path}: {one_line(error)}") from error


def _check_signature(session, name: str, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> None:
    """A one-line error unless the session's graph takes and gives what the engine feeds."""
    found = (
        tuple(node.name for node in session.get_inputs()),
        tuple(node.name for node in session.get_outputs()),
    )
    if found != (inputs, outputs):
        raise Seq2SeqError(
            f"{name} takes {list(found[0])} and gives {list(found[1])}, not the graph seq2seq"
            f" export writes ({list(inputs)} -> {list(outputs)})"
        )
