"""The JSON the server reads and writes, as pydantic models (they are its OpenAPI schema).

A translate request takes SearchOptions' fields by their names (`beam_size`, `alpha`, ...); the
request model is built from SearchOptions, so a new search option is a request field at once.
Types are strict: `"5"` is not a beam size, `"yes"` is not a boolean.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, create_model

from seq2seq.decoding.search import SearchOptions


class _Text(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    text: str | list[str] = Field(
        description="a sentence, or a list of sentences translated each on its own"
    )
    attention: bool = Field(
        False, description="also return subword tokens and each hypothesis' attention matrix"
    )


def _search_fields() -> dict[str, Any]:
    """SearchOptions' fields as optional request fields (absent: the server's default)."""
    hints = typing.get_type_hints(SearchOptions)
    return {
        field.name: (Optional[hints[field.name]], None)  # noqa: UP045 (pydantic needs a type)
        for field in dataclasses.fields(SearchOptions)
    }


TranslateRequest = create_model(
    "TranslateRequest",
    __base__=_Text,
    __doc__="Sentences to translate and, optionally, how to search (SearchOptions' fields).",
    **_search_fields(),
)


def search_overrides(request: BaseModel) -> dict[str, Any]:
    """The search options a request gives (SearchOptions' fields it sets, null meaning unset)."""
    given = {
        field.name: getattr(request, field.name) for field in dataclasses.fields(SearchOptions)
    }
    return {name: value for name, value in given.items() if value is not None}


class Hypothesis(BaseModel):
    """One translation of a sentence."""

    text: str
    score: float = Field(description="log-probability over the length penalty (what ranked it)")
    target_tokens: list[str] | None = Field(
        None, description="its subwords and the closing </s> (with attention)"
    )
    attention: list[list[float]] | None = Field(
        None,
        description="(target tokens, source tokens) weights: row i is what target token i read",
    )


class SentenceTranslation(BaseModel):
    """The n-best translations of one sentence, best first."""

    source_tokens: list[str] | None = Field(None, description="the subwords read (with attention)")
    hypotheses: list[Hypothesis]


class TranslateResponse(BaseModel):
    """Translations in the order of the request's sentences."""

    translations: list[SentenceTranslation]
    search: dict[str, Any] = Field(description="the search options used")
    time_ms: float = Field(description="time from the request's arrival to its answer")


class ErrorResponse(BaseModel):
    """What every error answers."""

    error: str = Field(description="what was wrong, in one line")
    limit: str | None = Field(None, description="the server limit the request passed")
    allowed: int | None = Field(None, description="that limit's value")
