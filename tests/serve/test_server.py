"""`seq2seq serve` as a process: it listens where told, answers the requests in flight when
SIGTERM comes and exits 0, never logs request texts, and fails in one line before loading a
model when it cannot serve."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")

import seq2seq.serve
from seq2seq import cli

SECRET_SENTENCE = "zebra quokka narwhal"  # must never reach the server's log


def start_server(checkpoint: Path, log: Path, *options: str) -> tuple[subprocess.Popen, str]:
    """`seq2seq serve` on a free loopback port; the process and its base URL once it listens."""
    command = [sys.executable, "-m", "seq2seq.cli", "serve", "--checkpoint", str(checkpoint)]
    process = subprocess.Popen(
        [*command, "--port", "0", *options], stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = re.search(r"listening on (http://\S+)", log.read_text())
        if found and process.poll() is None:
            return process, found.group(1)
        if process.poll() is not None:
            raise AssertionError(f"the server exited: {log.read_text()}")
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"the server did not start: {log.read_text()}")


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=60) as answer:
        return answer.status, json.loads(answer.read())


def test_sigterm_answers_the_request_in_flight_then_exits_0(trained, tmp_path) -> None:
    log = tmp_path / "server.log"
    # a batch waits 1.5 s for company: the request is in flight when SIGTERM comes
    process, url = start_server(trained.checkpoint, log, "--batch-timeout", "1500")
    answers = []
    client = threading.Thread(
        target=lambda: answers.append(post(f"{url}/translate", {"text": SECRET_SENTENCE}))
    )
    started = time.monotonic()
    client.start()
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    client.join(30)
    assert process.wait(30) == 0
    assert answers and answers[0][0] == 200
    assert answers[0][1]["translations"][0]["hypotheses"][0]["text"]
    assert time.monotonic() - started >= 1.4  # answered after its batch's wait, not cut short
    text = log.read_text()
    assert "POST /translate" in text and SECRET_SENTENCE not in text
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/health", timeout=5)


def test_a_port_in_use_is_one_line_before_the_model_loads(capsys, tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        missing = tmp_path / "never-read.ckpt"  # the port fails first
        with pytest.raises(SystemExit) as exit_:
            cli.main(["serve", "--checkpoint", str(missing), "--port", str(port)])
    assert exit_.value.code == 1
    error = capsys.readouterr().err
    assert error == f"seq2seq: error: cannot listen on 127.0.0.1:{port}: Address already in use\n"


def test_without_the_serve_extra_the_command_says_how_to_install_it(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "fastapi", None)  # `import fastapi` now fails
    monkeypatch.delitem(sys.modules, "seq2seq.serve.app", raising=False)
    monkeypatch.delattr(seq2seq.serve, "app", raising=False)  # so that it is imported anew
    with pytest.raises(SystemExit) as exit_:
        cli.main(["serve", "--checkpoint", "model.ckpt"])
    assert exit_.value.code == 1
    assert capsys.readouterr().err == (
        "seq2seq: error: seq2seq serve needs the serve extra (fastapi is missing):"
        " pip install 'seq2seq[serve]'\n"
    )


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--max-beam", "4"], "(beam_size 5, nbest 1) is past --max-beam 4 or --max-nbest 16"),
        (["--port", "70000"], "cannot listen on 127.0.0.1:70000"),
        (["--max-batch-size", "0"], "must be a whole number of at least 1"),
    ],
)
def test_bad_settings_are_one_line(trained, capsys, options: list[str], words: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["serve", "--checkpoint", str(trained.checkpoint), "--port", "0", *options])
    assert exit_.value.code == 1
    error = capsys.readouterr().err
    assert words in error and error.count("\n") == 1
