"""Running the server: the listening socket first (a port in use fails before the model loads),
then the model, then uvicorn until SIGTERM or Ctrl+C.

On SIGTERM uvicorn stops accepting connections, answers the requests in flight, the batcher
searches what is queued, and the process exits 0.
"""

from __future__ import annotations

import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from seq2seq.checkpoint import checkpoint_facts
from seq2seq.errors import Seq2SeqError
from seq2seq.export.engine import OnnxModel
from seq2seq.shortlist import Shortlist
from seq2seq.translator import Translator


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port and listening (port 0: any free one); a one-line error when
    the address cannot be had."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(2048)
    except (OSError, OverflowError) as error:
        reason = getattr(error, "strerror", None) or error
        raise Seq2SeqError(f"cannot listen on {host}:{port}: {reason}") from error
    listener.set_inheritable(True)
    return listener


def describe(paths: Sequence[str | Path], translator: Translator) -> dict[str, Any]:
    """What GET /info says of the model: sizes, languages, vocabulary (and the target words it
    scores), and per checkpoint its training step and last validation BLEU (null when the run
    recorded none); for an export (no `paths`), the facts of the checkpoint it was exported
    from; the engine, device, precision and shortlist it searches with."""
    model = translator.model
    if isinstance(model, OnnxModel):
        checkpoints = [dict(model.manifest.checkpoint)]
        parameters, architectures = model.manifest.parameters, [model.manifest.architecture]
    else:
        checkpoints = [checkpoint_facts(path) for path in paths]
        parameters = sum(p.numel() for p in model.parameters())
        architectures = [vars(member.config) for member in getattr(model, "members", [model])]
    data = checkpoints[0].pop("data")
    for facts in checkpoints[1:]:
        facts.pop("data")
    return {
        "source_language": data.get("src_lang", "source"),
        "target_language": data.get("tgt_lang", "target"),
        "vocabulary": {
            "source": translator.tokenizer.src.get_piece_size(),
            "target": translator.tokenizer.tgt.get_piece_size(),
            "scored": model.output_words().numel(),  # target words the output layer scores
        },
        "parameters": parameters,
        "architecture": architectures,
        "checkpoints": checkpoints,
        "engine": translator.engine,
        "device": str(translator.device),
        "precision": translator.precision,
        "shortlist": _shortlist_facts(translator.shortlist),
    }


def _shortlist_facts(shortlist: Shortlist | None) -> dict[str, int] | None:
    """What GET /info says of the translator's shortlist (None: it searches every word)."""
    if shortlist is None:
        return None
    return {"per_word": shortlist.per_word, "frequent_words": shortlist.frequent.numel()}


def run(app: Any, listener: socket.socket, log_level: str = "info") -> None:
    """Serve `app` on `listener` until SIGTERM (exit 0 once the requests in flight are answered)
    or Ctrl+C."""
    import uvicorn

    host, port = listener.getsockname()[:2]
    config = uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=60)
    server = uvicorn.Server(config)
    print(f"seq2seq serve: listening on http://{host}:{port}", file=sys.stderr, flush=True)
    # uvicorn raises SIGTERM again once it has stopped: a handler that does nothing makes that
    # a clean exit instead of death by the signal
    signal.signal(signal.SIGTERM, lambda number, frame: None)
    server.run(sockets=[listener])
