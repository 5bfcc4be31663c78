"""The translation server's application: routes, limits, the API key, errors as JSON.

    POST /translate   sentences -> n-best translations (with attention when asked)
    GET  /health      {"status": "ok", ...}: no key needed
    GET  /info        model sizes, languages, vocabulary, training step, validation BLEU
    GET  /            the page (static/): no key needed, nor for its files under /static
    GET  /docs        the OpenAPI page; /openapi.json the schema

Every error is `{"error": one line, ...}` with its status: 400 unreadable JSON, 401 no or wrong
key, 413 too many lines or characters, 422 wrong fields or search options past the limits, 503
a translation past the time limit; never a traceback. Request texts are never logged.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from seq2seq.decoding.search import SearchOptions
from seq2seq.errors import Seq2SeqError, one_line
from seq2seq.serve.batcher import Batcher
from seq2seq.serve.schemas import (
    ErrorResponse,
    Hypothesis,
    SentenceTranslation,
    TranslateRequest,
    TranslateResponse,
    search_overrides,
)
from seq2seq.translator import Translation, Translator

STATIC = Path(__file__).parent / "static"
OPEN_PATHS = ("/health", "/", "/favicon.ico")  # and /static/...: no API key needed
ATTENTION_DECIMALS = 4


@dataclass(frozen=True)
class ServerSettings:
    """How the server batches and what it accepts.

    Args:
        max_batch_size: most sentences searched in one batch (1: every request alone).
        batch_timeout: seconds a batch waits for more requests after its first one arrives.
        workers: batches searched at the same time.
        timeout: seconds a request may wait for its translations before a 503.
        max_chars: most characters in one sentence (413 beyond).
        max_lines: most sentences in one request (413 beyond).
        max_beam: largest beam_size a request may ask for (422 beyond).
        max_nbest: most hypotheses a request may ask for per sentence (422 beyond).
        api_key: when set, every endpoint but /health and the page needs `Bearer <key>`.
        cors_origins: origins other web pages may call the API from (none: CORS off).
    """

    max_batch_size: int = 32
    batch_timeout: float = 0.005
    workers: int = 1
    timeout: float = 30.0
    max_chars: int = 1000
    max_lines: int = 64
    max_beam: int = 16
    max_nbest: int = 16
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()

    def max_body_bytes(self) -> int:
        """The largest request body worth reading: every line at its longest, 4 bytes a
        character, plus room for the options."""
        return self.max_lines * (4 * self.max_chars + 16) + 4096


class Refused(Exception):
    """A request the server will not translate: the status, a line, and the limit it passed."""

    def __init__(
        self, status: int, message: str, limit: str | None = None, allowed: int | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.limit, self.allowed = status, limit, allowed


def create_app(
    translator: Translator, search: SearchOptions, settings: ServerSettings, info: dict[str, Any]
) -> FastAPI:
    """The application serving `translator` with `search` as the default search options; `info`
    is what GET /info says of the model."""
    batcher = Batcher(
        translator.translate_ids, settings.max_batch_size, settings.batch_timeout, settings.workers
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        await batcher.stop()  # after the requests in flight are answered

    app = FastAPI(
        title="seq2seq translation server",
        summary=f"{info['source_language']} -> {info['target_language']}",
        lifespan=lifespan,
    )
    _add_errors(app)
    _add_guards(app, settings)
    _add_translate(app, translator, search, batcher, settings)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Whether the server answers; requests queued, batches and sentences searched."""
        return {
            "status": "ok",
            "queued": batcher.queued,
            "batches": batcher.batches,
            "sentences": batcher.sentences,
        }

    @app.get("/info")
    async def model_info() -> dict[str, Any]:
        """The model, its languages and training, the search defaults and the limits."""
        limits = {name: value for name, value in asdict(settings).items() if name != "api_key"}
        return {**info, "search": asdict(search), "limits": limits}

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _add_translate(
    app: FastAPI,
    translator: Translator,
    search: SearchOptions,
    batcher: Batcher,
    settings: ServerSettings,
) -> None:
    failures = {status: {"model": ErrorResponse} for status in (400, 401, 413, 422, 500, 503)}

    @app.post(
        "/translate",
        response_model_exclude_none=True,
        responses=failures,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": TranslateRequest.model_json_schema()}},
            }
        },
    )
    async def translate(raw: Request) -> TranslateResponse:
        """Translate a sentence or a list of sentences (n-best, scores, attention when asked).
        The body is read as JSON whatever its Content-Type says (`curl -d` sends another)."""
        started = time.perf_counter()
        request = parse_request(await raw.body())
        lines = [request.text] if isinstance(request.text, str) else request.text
        options = request_options(search, request, len(lines), settings)
        for number, line in enumerate(lines, start=1):
            if len(line) > settings.max_chars:
                raise Refused(
                    413,
                    f"sentence {number} has {len(line)} characters; at most {settings.max_chars}",
                    "max_chars",
                    settings.max_chars,
                )
        try:
            found = await batcher.translate(
                translator.encode(lines), options, request.attention, settings.timeout
            )
        except asyncio.TimeoutError:
            message = f"no translation within {settings.timeout:g} s: the server is busy"
            return _error(503, message)
        translations = [
            _sentence(translator, line, nbest, request.attention)
            for line, nbest in zip(lines, found, strict=True)
        ]
        elapsed = (time.perf_counter() - started) * 1000
        return TranslateResponse(translations=translations, search=asdict(options), time_ms=elapsed)


def parse_request(body: bytes) -> Any:
    """The TranslateRequest in a body: 400 when it is not JSON, 422 when its fields are wrong."""
    try:
        return TranslateRequest.model_validate_json(body)
    except ValidationError as error:
        problems = error.errors(include_url=False)
        if any(problem["type"] == "json_invalid" for problem in problems):
            raise Refused(400, "the request body is not valid JSON") from None
        first = problems[0]
        if (
            first["loc"][:1] == ("text",) and len(first["loc"]) > 1
        ):  # a union: pydantic explains each member's failure
            raise Refused(422, "text: must be a string or a list of strings") from None
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise Refused(422, f"{where}: {first['msg']}") from None


def request_options(
    defaults: SearchOptions, request: Any, lines: int, settings: ServerSettings
) -> SearchOptions:
    """The request's search options over the server's defaults, checked against its limits."""
    if lines > settings.max_lines:
        raise Refused(
            413,
            f"{lines} sentences in one request; at most {settings.max_lines}",
            "max_lines",
            settings.max_lines,
        )
    given = search_overrides(request)
    for name, most in (("beam_size", settings.max_beam), ("nbest", settings.max_nbest)):
        if given.get(name, 0) > most:
            message = f"{name} {given[name]} is above this server's {most}"
            raise Refused(422, message, f"max_{name.split('_')[0]}", most)
    try:
        options = replace(defaults, **given)
    except Seq2SeqError as error:
        raise Refused(422, str(error)) from error
    return options


def _sentence(
    translator: Translator, line: str, nbest: list[Translation], attention: bool
) -> SentenceTranslation:
    """One sentence's answer; with `attention`, its subwords and each hypothesis' weights."""
    if not attention:
        return SentenceTranslation(
            hypotheses=[Hypothesis(text=t.text, score=t.score) for t in nbest]
        )
    hypotheses = [
        Hypothesis(
            text=t.text,
            score=t.score,
            target_tokens=translator.target_pieces(t),
            attention=_rounded(t.attention),
        )
        for t in nbest
    ]
    return SentenceTranslation(source_tokens=translator.source_pieces(line), hypotheses=hypotheses)


def _rounded(attention: np.ndarray | None) -> list[list[float]]:
    """Attention weights as JSON numbers with ATTENTION_DECIMALS decimals (float32's digits
    beyond say nothing)."""
    if attention is None:
        return []
    return attention.astype(np.float64).round(ATTENTION_DECIMALS).tolist()


def _add_guards(app: FastAPI, settings: ServerSettings) -> None:
    """The API key and the body size, checked before a request is read; then CORS, outermost,
    so that a browser also sees why a request was refused."""

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        path = request.url.path
        if settings.api_key and not (path in OPEN_PATHS or path.startswith("/static/")):
            expected = f"Bearer {settings.api_key}".encode()
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return _error(401, "this server needs 'Authorization: Bearer <API key>'")
        size = request.headers.get("content-length", "0")
        if size.isdigit() and int(size) > settings.max_body_bytes():
            message = f"a request body of {size} bytes; at most {settings.max_body_bytes()}"
            return _error(413, message, "max_body_bytes", settings.max_body_bytes())
        return await call_next(request)

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )


def _add_errors(app: FastAPI) -> None:
    """Every error as `{"error": one line}`: refusals, HTTP errors (404, 405), failures."""

    @app.exception_handler(Refused)
    async def refused(request: Request, error: Refused) -> JSONResponse:
        return _error(error.status, str(error), error.limit, error.allowed)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return _error(error.status_code, str(error.detail), headers=error.headers)

    @app.exception_handler(Exception)
    async def failure(request: Request, error: Exception) -> JSONResponse:
        if isinstance(error, Seq2SeqError):
            return _error(500, one_line(error))
        return _error(500, f"internal error ({type(error).__name__}); the server goes on")


def _error(
    status: int,
    message: str,
    limit: str | None = None,
    allowed: int | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorResponse(error=message, limit=limit, allowed=allowed)
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    return JSONResponse(body.model_dump(exclude_none=True), status, headers=headers)
