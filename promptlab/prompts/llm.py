"""Asking an LLM for class descriptions with CuPL's recipe, class by class, through a resumable on-disk cache.

Each class is asked every recipe question (`samples` answers each); its raw answers are written to the cache as
one file as soon as the class is complete, so a run that stops (network down, quota, Ctrl-C) resumes with the
classes it had not finished and never pays twice for an answer. The cache folder is keyed by a digest of
everything that changes the answers (backend, endpoint or model, the recipe; never an API key) and each file by
the class name, so domain-shift targets over the same class names reuse the source's answers, and two classes
with the same name (ImageNet's duplicates) get the same descriptions, as with the file backend.

Answers become sentences CuPL's way: cut at the stop string, whitespace collapsed, a full stop appended when
the answer does not end in ".", "!" or "?" (the stop string "." is not part of the returned text).
"""

from __future__ import annotations

import hashlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from promptlab.errors import UserError
from promptlab.io import read_json, write_json

if TYPE_CHECKING:
    from promptlab.config import LLMRecipeParams

Ask = Callable[[str], list[str]]  # one question (class name filled in) -> its sampled answers


class AskError(Exception):
    """A question could not be answered (after any retries); the message names the reason, never a key."""


def recipe_settings(recipe: "LLMRecipeParams") -> dict:
    """The recipe fields that change the answers (not the cache folder)."""
    return {k: v for k, v in recipe.model_dump().items() if k != "cache"}


def settings_digest(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def cache_folder(cache_root: str | Path, settings: dict) -> Path:
    return Path(cache_root) / f"{settings['backend']}-{settings_digest(settings)[:16]}"


def class_cache_file(folder: Path, name: str) -> Path:
    return folder / f"{hashlib.sha256(name.encode()).hexdigest()[:16]}.json"


def answer_sentence(text: str, stop: str | None) -> str:
    """One raw answer as a sentence (empty when the model said nothing)."""
    if stop:
        text = text.split(stop, 1)[0]
    text = " ".join(text.split())
    return text if not text or text[-1] in ".!?" else text + "."


def ask_class(name: str, questions: list[str], ask: Ask) -> list[list[str]]:
    """Raw answers per question for one class."""
    return [ask(q.format(name)) for q in questions]


def _cached_answers(path: Path, name: str, n_questions: int) -> list[list[str]] | None:
    """The class's cached answers, or None when absent, for another name, or from an unreadable file (asked
    again rather than trusted)."""
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return None
    answers = data.get("answers") if isinstance(data, dict) and data.get("classname") == name else None
    return answers if isinstance(answers, list) and len(answers) == n_questions else None


def _answer_and_cache(name: str, folder: Path, questions: list[str], ask: Ask) -> list[list[str]]:
    path = class_cache_file(folder, name)
    cached = _cached_answers(path, name, len(questions))
    if cached is not None:
        return cached
    answers = ask_class(name, questions, ask)
    write_json(path, {"classname": name, "answers": answers})  # atomic: a killed run leaves no half file
    return answers


def answers_for_classes(names: list[str], recipe: "LLMRecipeParams", settings: dict, ask: Ask,
                        concurrency: int) -> list[list[list[str]]]:
    """Raw answers [class][question][sample] for `names` (asked once per distinct name, `concurrency` classes
    at a time). The first class that fails stops the run: classes not yet started are skipped, those in flight
    finish into the cache, and the error names the class and says that a rerun resumes."""
    folder = cache_folder(recipe.cache, settings)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "settings.json", settings)  # for humans; the same bytes every time
    stop = threading.Event()

    def one_class(name: str) -> list[list[str]] | None:
        if stop.is_set():
            return None  # skipped: another class failed
        try:
            return _answer_and_cache(name, folder, recipe.questions, ask)
        except BaseException:
            stop.set()
            raise

    unique = list(dict.fromkeys(names))
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = {n: pool.submit(one_class, n) for n in unique}
    failed = [(n, f.exception()) for n, f in futures.items() if f.exception() is not None]
    if failed:
        name, exc = failed[0]
        if not isinstance(exc, (AskError, UserError)):
            raise exc  # a bug, not a failed answer: keep its traceback
        finished = sum(f.exception() is None and f.result() is not None for f in futures.values())
        raise UserError(f"descriptions: class {name!r}: {exc} ({finished} of {len(unique)} classes are cached "
                        f"under {folder}; rerunning resumes from there)")
    return [futures[n].result() for n in names]


def llm_descriptions(names: list[str], recipe: "LLMRecipeParams", settings: dict, ask: Ask,
                     concurrency: int) -> tuple[list[list[str]], dict]:
    """(sentences per class, metadata = the generation settings and the cache folder)."""
    answers = answers_for_classes(names, recipe, settings, ask, concurrency)
    sentences = [[answer_sentence(a, recipe.stop) for per_q in per_class for a in per_q] for per_class in answers]
    return sentences, {**settings, "cache": str(cache_folder(recipe.cache, settings))}
