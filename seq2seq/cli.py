"""The `seq2seq` command: `prepare` (translate, evaluate and score come with decoding).

`seq2seq prepare` reads the same configuration as `train.py` (same files, same flags), so
`seq2seq prepare --config configs/quick.yaml` prepares exactly the data that training will use.
"""

from __future__ import annotations

import argparse
import json
import sys

from seq2seq.errors import Seq2SeqError


def prepare(args: list[str]) -> None:
    """Fetch the corpora, train the tokenizer, encode every split, print statistics as JSON."""
    from seq2seq.lightning_cli import build_cli  # Lightning is slow to import: only when needed

    datamodule = build_cli(args, run=False).datamodule
    datamodule.prepare_data()
    datamodule.setup()
    print(json.dumps(datamodule.statistics(), indent=2))


COMMANDS = {"prepare": prepare}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="seq2seq", description="Recurrent neural machine translation."
    )
    parser.add_argument("command", choices=sorted(COMMANDS), help="prepare: data statistics")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="the command's options (--help)")
    arguments = parser.parse_args(argv)
    try:
        COMMANDS[arguments.command](arguments.options)
    except Seq2SeqError as error:
        print(f"seq2seq: error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
