"""Seq2SeqError: the one exception meant for users, shown as a single line by the commands."""


class Seq2SeqError(Exception):
    """A problem with the user's input (files, options, checkpoints), never a bug in seq2seq."""
