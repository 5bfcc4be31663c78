"""Seq2SeqError: the one exception meant for users, shown as a single line by the commands."""


class Seq2SeqError(Exception):
    """A problem with the user's input (files, options, checkpoints), never a bug in seq2seq."""


def require(condition: bool, message: str) -> None:
    """A `Seq2SeqError` with `message` unless `condition`: settings checked where they are made,
    with the user's own values in the message (NaN fails every comparison, so it is refused)."""
    if not condition:
        raise Seq2SeqError(message)


def one_line(error: BaseException) -> str:
    """An error's message on one line (parsers explain over several), or its type's name."""
    return " ".join(str(error).split()) or type(error).__name__
