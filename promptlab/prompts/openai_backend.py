"""Description backend `openai`: any OpenAI-compatible `POST {base_url}/chat/completions` endpoint (OpenAI,
vLLM, llama.cpp's server, Ollama, ...), with the standard library only.

Each recipe question is sent as one user message asking for `samples` choices (`n`); a server that returns fewer
choices (some ignore `n`) is asked again for the rest. 429, 5xx, 408, timeouts, dropped connections and malformed
bodies are retried with exponential backoff (`backoff_s` doubled per retry, capped at a minute; a Retry-After
header in seconds wins), `max_retries` times; other HTTP errors (401 bad key, 404 unknown model) stop at once.

The API key is read from the environment variable named by `api_key_env` and only ever put in the
Authorization header: it is not in params, the cache key, the bank or any message (server text quoted in an error
has it masked, in case the server echoes it).
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

from promptlab.errors import UserError
from promptlab.prompts.llm import AskError, llm_descriptions, recipe_settings

if TYPE_CHECKING:
    from promptlab.config import LLMRecipeParams, OpenAIParams

_RETRY_STATUS = {408, 429}  # and every 5xx
_MAX_DELAY_S = 60.0


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def read_api_key(env_name: str | None) -> str | None:
    """The key from the environment (None when no variable is configured): unset or empty is an error."""
    if env_name is None:
        return None
    key = os.environ.get(env_name, "")
    if not key:
        raise UserError(f"environment variable {env_name} is not set (prompts.descriptions.openai.api_key_env "
                        "names the variable that holds the API key)")
    return key


def _retry_after(headers) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


class ChatClient:
    """Asks one question for `recipe.samples` answers; `ask` is what the recipe driver calls."""

    def __init__(self, params: "OpenAIParams", recipe: "LLMRecipeParams"):
        self.params, self.recipe = params, recipe
        self.url = params.base_url.rstrip("/") + "/chat/completions"
        self._key = read_api_key(params.api_key_env)

    def ask(self, question: str) -> list[str]:
        answers: list[str] = []
        while len(answers) < self.recipe.samples:
            answers += self._post_with_retries(question, self.recipe.samples - len(answers))
        return answers

    def _mask(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def _post_with_retries(self, question: str, n: int) -> list[str]:
        for attempt in range(self.params.max_retries + 1):
            try:
                return self._post(question, n)
            except _Retryable as exc:
                last = exc
                if attempt < self.params.max_retries:
                    delay = self.params.backoff_s * 2 ** attempt if exc.retry_after is None else exc.retry_after
                    time.sleep(min(delay, _MAX_DELAY_S))
        raise AskError(f"{self.url}: gave up after {self.params.max_retries + 1} attempts: {last}")

    def _post(self, question: str, n: int) -> list[str]:
        body = {"model": self.params.model, "messages": [{"role": "user", "content": question}], "n": n,
                "temperature": self.recipe.temperature, "max_tokens": self.recipe.max_tokens}
        if self.recipe.stop:
            body["stop"] = [self.recipe.stop]
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        request = urllib.request.Request(self.url, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.params.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = f"HTTP {exc.code}: {self._mask(exc.read(300).decode('utf-8', 'replace')).strip()}"
            if exc.code in _RETRY_STATUS or exc.code >= 500:
                raise _Retryable(detail, _retry_after(exc.headers)) from None
            raise AskError(f"{self.url}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as exc:
            raise _Retryable(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from None
        return self._contents(raw)

    def _contents(self, raw: bytes) -> list[str]:
        """The choices' message contents; anything else is a malformed response (retried)."""
        try:
            choices = json.loads(raw)["choices"]
            contents = [c["message"]["content"] for c in choices]
        except (ValueError, KeyError, TypeError):
            contents = None
        if not contents or not all(isinstance(c, str) for c in contents):
            snippet = self._mask(raw[:200].decode("utf-8", "replace"))
            raise _Retryable(f"malformed response (no choices[].message.content): {snippet!r}")
        return contents


def openai_descriptions(params: "OpenAIParams", recipe: "LLMRecipeParams", names: list[str]
                        ) -> tuple[list[list[str]], dict]:
    """(sentences per class, generation settings) from the endpoint, resuming from the answer cache."""
    client = ChatClient(params, recipe)
    settings = {"backend": "openai", "base_url": params.base_url, "model": params.model,
                "recipe": recipe_settings(recipe)}
    return llm_descriptions(names, recipe, settings, client.ask, params.concurrency)
