"""Description backend `openai` against a chat/completions server this test runs on 127.0.0.1: the request it
sends, retries, malformed answers, resuming from the cache, and the API key kept out of every file and message."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from promptlab.config import validate_params
from promptlab.errors import UserError
from promptlab.prompts.descriptions import build_text_bank, write_text_bank

KEY = "sk-test-SECRET-4242"
NAMES = ["red circle", "blue square", "green triangle"]
QUESTIONS = ["Describe what a {} looks like", "How can you identify a {}?"]


class ChatServer:
    """A chat/completions endpoint: `reply(question, n, count)` returns (status, headers, body) for each request;
    the default answers n choices "{question} answer {i}" with a trailing period-terminated tail to be cut."""

    def __init__(self):
        self.requests: list[dict] = []
        self.reply = self.answer
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                status, headers, payload = server.reply(body["messages"][0]["content"], body["n"],
                                                        len(server.requests))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @staticmethod
    def answer(question: str, n: int, count: int):
        choices = [{"index": i, "message": {"role": "assistant", "content": f"  {question} answer {i}. Extra"}}
                   for i in range(n)]
        return 200, {"Content-Type": "application/json"}, json.dumps({"choices": choices}).encode()

    def questions(self) -> list[str]:
        return [r["body"]["messages"][0]["content"] for r in self.requests]


@pytest.fixture
def server():
    s = ChatServer()
    yield s
    s.httpd.shutdown()


def _params(server, tmp_path, **openai):
    raw = {"backend": "openai",
           "recipe": {"questions": QUESTIONS, "samples": 3, "temperature": 0.5, "max_tokens": 20,
                      "cache": str(tmp_path / "cache")},
           "openai": {"base_url": server.url, "model": "tiny-llm", "api_key_env": "PROMPTLAB_TEST_KEY",
                      "concurrency": 1, "max_retries": 2, "backoff_s": 0.0, **openai}}
    return validate_params({"prompts": {"descriptions": raw}}).prompts.descriptions


def _build(params, names=NAMES):
    return build_text_bank(params, 1, root="unused", folder="unused", dataset="toy", names=names)


def _all_written_text(tmp_path: Path) -> str:
    return "".join(p.read_text() for p in tmp_path.rglob("*") if p.is_file())


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("PROMPTLAB_TEST_KEY", KEY)


def test_asks_every_question_per_class_and_keeps_the_key_out_of_every_file(server, tmp_path):
    bank = _build(_params(server, tmp_path))
    assert len(server.requests) == len(NAMES) * len(QUESTIONS)
    first = server.requests[0]
    assert first["path"] == "/v1/chat/completions" and first["auth"] == f"Bearer {KEY}"
    assert first["body"] == {"model": "tiny-llm", "messages": [{"role": "user", "content":
                             "Describe what a red circle looks like"}], "n": 3, "temperature": 0.5,
                             "max_tokens": 20, "stop": ["."]}
    assert bank.sentences[1] == [f"{q.format('blue square')} answer {i}." for q in QUESTIONS for i in range(3)]
    assert bank.source == {"backend": "openai", "base_url": server.url, "model": "tiny-llm",
                           "cache": bank.source["cache"],
                           "recipe": {"questions": QUESTIONS, "samples": 3, "temperature": 0.5, "max_tokens": 20,
                                      "stop": "."}}
    write_text_bank(tmp_path / "out", bank)
    written = _all_written_text(tmp_path)
    assert "red circle looks like answer 0." in written  # the cache and the bank were written ...
    assert KEY not in written  # ... and the key is in neither


def test_429_is_retried_after_retry_after(server, tmp_path):
    def reply(question, n, count):
        if count == 1:
            return 429, {"Retry-After": "0"}, b'{"error": "slow down"}'
        return ChatServer.answer(question, n, count)

    server.reply = reply
    bank = _build(_params(server, tmp_path), names=["red circle"])
    assert server.questions() == ["Describe what a red circle looks like"] * 2 + ["How can you identify a red circle?"]
    assert len(bank.sentences[0]) == 6


def test_a_server_that_ignores_n_is_asked_until_it_gave_every_sample(server, tmp_path):
    server.reply = lambda question, n, count: ChatServer.answer(question, 1, count)  # always one choice
    bank = _build(_params(server, tmp_path), names=["red circle"])
    assert [r["body"]["n"] for r in server.requests] == [3, 2, 1, 3, 2, 1]
    assert len(bank.sentences[0]) == 2  # each question's three answers are the same sentence: repeats dropped


def test_malformed_response_is_one_clear_error_and_no_bank(server, tmp_path):
    server.reply = lambda question, n, count: (200, {}, json.dumps({"echo": KEY, "choices": []}).encode())
    params = _params(server, tmp_path, max_retries=1)
    with pytest.raises(UserError) as info:
        write_text_bank(tmp_path / "out", _build(params))
    msg = str(info.value)
    assert msg.startswith("descriptions: class 'red circle': ")
    assert "gave up after 2 attempts: malformed response (no choices[].message.content)" in msg
    assert "\n" not in msg and KEY not in msg and "***" in msg  # the server echoed the key: masked
    assert len(server.requests) == 2
    assert not (tmp_path / "out").exists()
    assert not list((tmp_path / "cache").rglob("????????????????.json"))  # no class was cached either


def test_unauthorised_is_not_retried(server, tmp_path):
    server.reply = lambda question, n, count: (401, {}, f'{{"error": "bad key {KEY[:12]}..."}}'.encode())
    with pytest.raises(UserError, match=r"HTTP 401: .*bad key sk-test-SECR") as info:
        _build(_params(server, tmp_path))
    assert len(server.requests) == 1 and KEY not in str(info.value)


def test_unset_key_variable_is_named_before_any_request(server, tmp_path, monkeypatch):
    monkeypatch.delenv("PROMPTLAB_TEST_KEY")
    with pytest.raises(UserError, match="environment variable PROMPTLAB_TEST_KEY is not set"):
        _build(_params(server, tmp_path))
    assert server.requests == []


def test_an_interrupted_run_resumes_asking_only_for_missing_classes(server, tmp_path):
    def broken(question, n, count):  # the endpoint fails for good on the last class
        if "green triangle" in question:
            return 503, {}, b"down"
        return ChatServer.answer(question, n, count)

    server.reply = broken
    params = _params(server, tmp_path)
    with pytest.raises(UserError) as info:
        _build(params)
    assert "class 'green triangle'" in str(info.value) and "HTTP 503: down" in str(info.value)
    assert "2 of 3 classes are cached" in str(info.value) and KEY not in str(info.value)
    assert len(server.requests) == 2 * len(QUESTIONS) + 3  # two classes, then three tries of the failing one

    server.requests.clear()
    server.reply = ChatServer.answer
    bank = _build(params)
    assert server.questions() == [q.format("green triangle") for q in QUESTIONS]
    assert [len(s) for s in bank.sentences] == [6, 6, 6]
    assert KEY not in _all_written_text(tmp_path)


def test_duplicated_class_names_are_asked_once_and_share_answers(server, tmp_path):
    bank = _build(_params(server, tmp_path), names=["missile", "tank", "missile"])
    assert len(server.requests) == 2 * len(QUESTIONS)
    assert bank.sentences[0] == bank.sentences[2] != bank.sentences[1]


def test_changed_settings_do_not_reuse_other_answers(server, tmp_path):
    _build(_params(server, tmp_path), names=["red circle"])
    _build(_params(server, tmp_path, model="other-llm"), names=["red circle"])
    assert [r["body"]["model"] for r in server.requests] == ["tiny-llm"] * 2 + ["other-llm"] * 2
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_an_unreachable_server_is_retried_then_named(tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    class Closed:
        url = f"http://127.0.0.1:{port}/v1"

    with pytest.raises(UserError) as info:
        _build(_params(Closed, tmp_path, max_retries=1), names=["red circle"])
    msg = str(info.value)
    assert msg.startswith(f"descriptions: class 'red circle': http://127.0.0.1:{port}/v1/chat/completions: "
                          "gave up after 2 attempts: URLError: ")
    assert "0 of 1 classes are cached" in msg and KEY not in msg
