"""Load test of `seq2seq serve`: concurrent clients on 127.0.0.1, with batching across requests
and without (`--max-batch-size 1`), the same checkpoint, sentences and time, one after the other.

Each client sends one test_2016 sentence a request, over its own keep-alive connection, as fast
as the answers come, for `--duration` seconds; requests are bounded by that time and stop by
themselves. Prints one JSON object: requests/s, sentences/s, p50/p95/p99 latency, errors (any
answer but 200, or a failed connection) and the server's mean batch size for each mode, and the
gain of batching as the ratio of the two throughputs. Server and clients share this machine's
cores.

    SEQ2SEQ_MULTI30K_DIR=../shared/data/multi30k python bench/serve_load.py \
        --checkpoint runs/demo/checkpoints/best.ckpt [--clients 32] [--duration 20] [--beam-size 5]
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from seq2seq.data.corpus import read_lines


def start_server(checkpoint: str, log: Path, options: list[str]) -> tuple[subprocess.Popen, int]:
    """`seq2seq serve` on a free loopback port: the process and its port, once it listens."""
    command = [sys.executable, "-m", "seq2seq.cli", "serve", "--checkpoint", checkpoint]
    with log.open("w") as out:
        server = subprocess.Popen(
            [*command, "--port", "0", *options], stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and server.poll() is None:
        found = re.search(r"listening on http://127\.0\.0\.1:(\d+)", log.read_text())
        if found:
            return server, int(found.group(1))
        time.sleep(0.1)
    server.kill()
    raise SystemExit(f"the server did not start:\n{log.read_text()}")


def client(port: int, sentences, beam: int | None, deadline: float, record: list) -> None:
    """Send requests until the deadline; append (latency seconds or None for an error)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while time.monotonic() < deadline:
        body = {"text": next(sentences)} | ({"beam_size": beam} if beam else {})
        started = time.perf_counter()
        try:
            connection.request("POST", "/translate", json.dumps(body))
            answer = connection.getresponse()
            answer.read()
            ok = answer.status == 200
        except (OSError, http.client.HTTPException):
            ok = False
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        record.append(time.perf_counter() - started if ok else None)
    connection.close()


def health(port: int) -> dict:
    """The server's GET /health: batches and sentences searched so far."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/health")
    return json.loads(connection.getresponse().read())


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of the sorted values lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def load(args: argparse.Namespace, sources: list[str], max_batch_size: int) -> dict:
    """One server, `args.clients` clients for `args.duration` seconds: the figures."""
    options = ["--max-batch-size", str(max_batch_size), "--batch-timeout", str(args.batch_timeout)]
    log = Path(tempfile.mkdtemp()) / "server.log"
    server, port = start_server(args.checkpoint, log, options)
    try:
        sentences = itertools.cycle(sources)  # next() under the GIL: each sentence once a turn
        client(port, sentences, args.beam_size, time.monotonic() + 2, [])  # warm-up
        before = health(port)
        records: list = []
        deadline = time.monotonic() + args.duration
        threads = [
            threading.Thread(
                target=client, args=(port, sentences, args.beam_size, deadline, records)
            )
            for _ in range(args.clients)
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        after = health(port)
    finally:
        server.send_signal(signal.SIGTERM)
        exit_status = server.wait(60)
    latencies = [seconds * 1000 for seconds in records if seconds is not None]
    return {
        "max_batch_size": max_batch_size,
        "requests": len(records),
        "errors": len(records) - len(latencies),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "sentences_per_s": round(len(latencies) / elapsed, 1),  # one sentence a request
        "latency_ms": {
            name: round(percentile(latencies, fraction), 1)
            for name, fraction in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
        },
        "mean_batch_size": round(
            (after["sentences"] - before["sentences"])
            / max(after["batches"] - before["batches"], 1),
            2,
        ),
        "server_exit_status": exit_status,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load per mode")
    parser.add_argument("--max-batch-size", type=int, default=32, help="with batching")
    parser.add_argument("--batch-timeout", type=float, default=5.0, help="milliseconds")
    parser.add_argument("--beam-size", type=int, help="default: the checkpoint's")
    args = parser.parse_args()
    directory = Path(os.environ["SEQ2SEQ_MULTI30K_DIR"])
    sources = list(read_lines(directory / "test_2016_flickr.de.gz"))
    batched = load(args, sources, args.max_batch_size)
    alone = load(args, sources, 1)
    report = {
        "checkpoint": args.checkpoint,
        "clients": args.clients,
        "duration_s": args.duration,
        "beam_size": args.beam_size,
        "cpus": os.cpu_count(),
        "batching": batched,
        "no_batching": alone,
        "batching_gain": round(batched["requests_per_s"] / max(alone["requests_per_s"], 1e-9), 2),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
