"""The API on a trained model: what it answers (translations identical to `seq2seq translate`,
n-best, attention), every refusal with its status and JSON, the API key, CORS, /info."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")

from fastapi.testclient import TestClient

from seq2seq import cli
from seq2seq.checkpoint import load_model
from seq2seq.serve.app import ServerSettings, create_app
from seq2seq.serve.server import describe
from seq2seq.translator import Translator
from tests.conftest import trained_shortlist

KEY = "s3cret-key"


def client(checkpoint: Path, **settings: object) -> TestClient:
    """A test client of the server of `checkpoint` (use it in `with`: that starts the batcher)."""
    translator = Translator.from_checkpoint(checkpoint)
    info = describe([checkpoint], translator)
    return TestClient(create_app(translator, translator.options, ServerSettings(**settings), info))


@pytest.fixture(scope="module")
def api(trained):
    with client(trained.checkpoint) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def test_lines(trained) -> list[str]:
    return (trained.corpus / "test.de").read_text().splitlines()[:20]


def cli_translate(trained, tmp_path: Path, lines: list[str], *options: str) -> list[str]:
    source, output = tmp_path / "source.txt", tmp_path / "output.txt"
    source.write_text("".join(line + "\n" for line in lines))
    arguments = ["--checkpoint", str(trained.checkpoint), "--input", str(source)]
    cli.main(["translate", *arguments, "--output", str(output), *options])
    return output.read_text().splitlines()


def test_a_list_is_translated_in_order_exactly_like_the_translate_command(
    api, trained, test_lines, tmp_path
) -> None:
    answer = api.post("/translate", json={"text": test_lines, "beam_size": 3})
    assert answer.status_code == 200
    body = answer.json()
    served = [sentence["hypotheses"][0]["text"] for sentence in body["translations"]]
    assert served == cli_translate(trained, tmp_path, test_lines, "--beam-size", "3")
    assert body["search"]["beam_size"] == 3
    assert body["time_ms"] > 0


def test_one_string_is_one_translation_and_an_empty_line_an_empty_one(api, test_lines) -> None:
    single = api.post("/translate", json={"text": test_lines[0]}).json()["translations"]
    listed = api.post("/translate", json={"text": [test_lines[0], "", "  "]}).json()
    assert len(single) == 1
    assert [s["hypotheses"][0]["text"] for s in listed["translations"]] == [
        single[0]["hypotheses"][0]["text"],
        "",
        "",
    ]


def test_nbest_lists_match_the_translate_command(api, trained, test_lines, tmp_path) -> None:
    lines = test_lines[:5]
    body = api.post("/translate", json={"text": lines, "beam_size": 4, "nbest": 3}).json()
    served = [
        f"{i} ||| {h['text']} ||| {h['score']:.4f}"
        for i, sentence in enumerate(body["translations"])
        for h in sentence["hypotheses"]
    ]
    expected = cli_translate(trained, tmp_path, lines, "--beam-size", "4", "--nbest", "3")
    assert served == expected
    for sentence in body["translations"]:
        scores = [h["score"] for h in sentence["hypotheses"]]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True)


def test_attention_is_one_row_per_target_subword_and_eos_over_the_source_subwords(
    api, test_lines
) -> None:
    body = api.post("/translate", json={"text": test_lines[:3], "nbest": 2, "attention": True})
    for sentence in body.json()["translations"]:
        sources = sentence["source_tokens"]
        for hypothesis in sentence["hypotheses"]:
            targets, weights = hypothesis["target_tokens"], hypothesis["attention"]
            assert targets[-1] == "</s>"
            assert "".join(targets[:-1]).replace("▁", " ").strip() == hypothesis["text"]
            assert (len(weights), {len(row) for row in weights}) == (len(targets), {len(sources)})
            assert all(abs(sum(row) - 1) < 1e-3 for row in weights)
    plain = api.post("/translate", json={"text": test_lines[0]}).json()["translations"][0]
    assert "source_tokens" not in plain and "attention" not in plain["hypotheses"][0]


REFUSALS = [
    # (body, status, words in the error, limit named)
    (b"{not json", 400, "not valid JSON", None),
    (b'{"text": 5}', 422, "text: must be a string or a list of strings", None),
    (b'{"text": ["a", 5]}', 422, "text: must be a string or a list of strings", None),
    (b'["a"]', 422, "Input should be an object", None),
    (b"{}", 422, "text: Field required", None),
    (b'{"text": "a", "beam_size": "5"}', 422, "beam_size: Input should be a valid integer", None),
    (b'{"text": "a", "attention": "yes"}', 422, "attention: Input should be a valid boolean", None),
    (b'{"text": "a", "colour": "red"}', 422, "colour: Extra inputs are not permitted", None),
    (b'{"text": "a", "strategy": "best"}', 422, "strategy: Input should be 'beam'", None),
    (b'{"text": "a", "nbest": 6, "beam_size": 5}', 422, "nbest must be between 1 and 5", None),
    (b'{"text": "a", "top_p": 0}', 422, "top_p must be above 0", None),
    (b'{"text": "a", "beam_size": 17}', 422, "beam_size 17 is above this server's 16", "max_beam"),
    (b'{"text": "a", "nbest": 17, "beam_size": 16}', 422, "nbest 17 is above", "max_nbest"),
    (b'{"text": "' + b"a" * 1001 + b'"}', 413, "sentence 1 has 1001 characters", "max_chars"),
    (b'{"text": [' + b",".join([b'"a"'] * 65) + b"]}", 413, "65 sentences", "max_lines"),
    (b'{"text": "' + b"a" * 300_000 + b'"}', 413, "a request body of", "max_body_bytes"),
]


@pytest.mark.parametrize(("body", "status", "words", "limit"), REFUSALS)
def test_bad_requests_are_refused_with_a_status_and_a_one_line_json_error(
    api, body: bytes, status: int, words: str, limit: str | None
) -> None:
    answer = api.post("/translate", content=body)
    assert answer.status_code == status
    error = answer.json()
    assert words in error["error"] and "\n" not in error["error"]
    assert error.get("limit") == limit
    assert api.get("/health").json()["status"] == "ok"


def test_unknown_paths_and_methods_answer_json(api) -> None:
    assert api.get("/nowhere").json() == {"error": "Not Found"}
    assert api.delete("/translate").status_code == 405


def test_the_body_is_read_as_json_whatever_its_content_type(api) -> None:
    answer = api.post(
        "/translate",
        content=b'{"text": "a b"}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200


def test_a_request_past_its_time_is_a_503_and_the_server_goes_on(trained) -> None:
    with client(trained.checkpoint, timeout=0.001, batch_timeout=0.2) as slow:
        answer = slow.post("/translate", json={"text": "a b c"})
        assert answer.status_code == 503
        assert "no translation within 0.001 s" in answer.json()["error"]
        health = slow.get("/health").json()
        assert (health["status"], health["queued"]) == ("ok", 0)
        assert slow.post("/translate", json={"text": []}).json()["translations"] == []


def test_info_says_what_the_model_is(api, trained) -> None:
    info = api.get("/info").json()
    assert (info["source_language"], info["target_language"]) == ("de", "en")
    scored = load_model(trained.checkpoint).model.output_words().numel()
    assert info["vocabulary"] == {"source": 40, "target": 40, "scored": scored}
    assert info["checkpoints"] == [
        {"path": str(trained.checkpoint), "step": 600, "validation_bleu": None}
    ]
    assert info["architecture"][0]["decoder_hidden_size"] == 64
    assert info["parameters"] > 0
    assert info["limits"]["max_beam"] == 16 and "api_key" not in info["limits"]
    assert info["shortlist"] is None


def test_info_says_the_shortlist_searched_with(trained) -> None:
    shortlist = trained_shortlist(trained, per_word=3)
    translator = Translator.from_checkpoint(trained.checkpoint, shortlist=shortlist)
    frequent = shortlist.frequent.numel()
    assert describe([trained.checkpoint], translator)["shortlist"] == {
        "per_word": 3,
        "frequent_words": frequent,
    }
    assert 2 < frequent <= 2 + 100  # BOS, EOS and the most frequent target words


def test_the_openapi_schema_describes_translate(api) -> None:
    schema = api.get("/openapi.json").json()
    body = schema["paths"]["/translate"]["post"]["requestBody"]["content"]["application/json"]
    assert {"text", "beam_size", "nbest", "attention", "alpha"} <= set(body["schema"]["properties"])
    assert api.get("/docs").status_code == 200


def test_with_an_api_key_only_health_and_the_page_are_open(trained) -> None:
    with client(trained.checkpoint, api_key=KEY) as keyed:
        for path in ("/health", "/", "/static/app.js", "/static/style.css"):
            assert keyed.get(path).status_code == 200, path
        for wrong in ({}, {"Authorization": "Bearer nope"}, {"Authorization": KEY}):
            answer = keyed.post("/translate", json={"text": "a"}, headers=wrong)
            assert answer.status_code == 401
            assert answer.headers["WWW-Authenticate"] == "Bearer"
            assert "Bearer" in answer.json()["error"]
        for path in ("/info", "/openapi.json", "/docs"):
            assert keyed.get(path).status_code == 401, path
        right = {"Authorization": f"Bearer {KEY}"}
        assert keyed.post("/translate", json={"text": "a"}, headers=right).status_code == 200
        assert keyed.get("/info", headers=right).status_code == 200


def test_cors_is_off_unless_an_origin_is_given(api, trained) -> None:
    origin = {"Origin": "https://example.org"}
    assert "access-control-allow-origin" not in api.get("/health", headers=origin).headers
    with client(trained.checkpoint, cors_origins=("https://example.org",)) as open_to:
        answer = open_to.get("/health", headers=origin)
        assert answer.headers["access-control-allow-origin"] == "https://example.org"
        other = open_to.get("/health", headers={"Origin": "https://elsewhere.example"})
        assert "access-control-allow-origin" not in other.headers
