"""The `seq2seq` command: `prepare` (more sub-commands come with translation and evaluation).

Options come from the signatures of the classes they configure (one configuration path), so
`seq2seq prepare --config configs/quick.yaml` reads the same `data:` section that training does.
"""

from __future__ import annotations

import json
import sys

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from seq2seq.datamodule import TranslationDataModule
from seq2seq.errors import Seq2SeqError


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="seq2seq", description="Recurrent neural machine translation.")
    commands = parser.add_subcommands(dest="command")
    prepare = ArgumentParser(
        description="Fetch the corpora, train the tokenizer, encode every split, print statistics."
    )
    prepare.add_argument("--config", action=ActionConfigFile, help="YAML file with a data: section")
    prepare.add_class_arguments(TranslationDataModule, "data")
    commands.add_subcommand("prepare", prepare, help="prepare the data and print its statistics")
    return parser


def prepare(options: Namespace) -> None:
    datamodule = TranslationDataModule(**vars(options.data))
    datamodule.prepare_data()
    datamodule.setup()
    print(json.dumps(datamodule.statistics(), indent=2))


COMMANDS = {"prepare": prepare}


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    options = parser.parse_args(argv)
    try:
        COMMANDS[options.command](options[options.command])
    except Seq2SeqError as error:
        print(f"seq2seq: error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
