"""The LLM description bank as text: which backend writes it, its post-processing, and the file between stages.

Stage `descriptions@<dataset>` builds a `TextBank` (sentences per class, in class order, with the settings that
made them) and writes it as `descriptions.json`, a DVC output: an LLM's answers are drawn once, versioned, and
every later stage reads the same sentences. Stage `prompts@<dataset>` reads it back and encodes it.

Backends (prompts.descriptions.backend): `file` (description_files.py: CuPL or classify-by-description JSON),
`openai` (openai_backend.py), `transformers` (transformers_backend.py), `none` (no description bank: methods
that need one refuse with a clear error).

Post-processing, the same for every backend: each sentence stripped; empty sentences and repeats dropped, first
occurrence kept in order; then every class must keep at least `prompts.min_descriptions` sentences, or the
error names the classes short of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from promptlab.errors import UserError
from promptlab.io import atomic_dir, dumps_json, read_json

if TYPE_CHECKING:
    from promptlab.config import DescriptionParams

TEXT_BANK_FILE = "descriptions.json"


@dataclass(frozen=True)
class TextBank:
    """names: the dataset's class names in label order; sentences: per class (None for backend `none`);
    source: how they were made (backend, model or file, recipe, sha256 of a file, unmatched file keys)."""

    names: list[str]
    sentences: list[list[str]] | None
    source: dict

    def document(self) -> dict:
        counts = [len(s) for s in self.sentences] if self.sentences is not None else None
        return {"classnames": self.names, "sentences": self.sentences, "counts": counts, "source": self.source}


def clean_sentences(sentences: list[list[str]]) -> list[list[str]]:
    """Per class: stripped, without empty sentences or repeats (first occurrence kept, order kept)."""
    return [list(dict.fromkeys(s.strip() for s in per_class if s.strip())) for per_class in sentences]


def require_minimum(names: list[str], sentences: list[list[str]], minimum: int, source: str) -> None:
    """Every class keeps at least `minimum` sentences after cleaning; the error names those short of it."""
    short = [f"{n!r} ({len(s)})" for n, s in zip(names, sentences) if len(s) < minimum]
    if short:
        raise UserError(f"{source}: {len(short)} classes have fewer than prompts.min_descriptions={minimum} "
                        f"sentences: {', '.join(short[:10])}{' ...' if len(short) > 10 else ''}")


def _raw_sentences(params: "DescriptionParams", root: str, folder: str, dataset: str, names: list[str]
                   ) -> tuple[list[list[str]] | None, dict]:
    """(sentences per class as the backend gives them, or None for no bank; backend metadata). Backends import lazily: the file
    backend never loads an HTTP client or transformers."""
    if params.backend == "file":
        from promptlab.prompts.description_files import load_file_descriptions
        return load_file_descriptions(params.file, root, folder, dataset, names)
    if params.backend == "openai":
        from promptlab.prompts.openai_backend import openai_descriptions
        return openai_descriptions(params.openai, params.recipe, names)
    from promptlab.prompts.transformers_backend import transformers_descriptions
    return transformers_descriptions(params.transformers, params.recipe, names)


def build_text_bank(params: "DescriptionParams", min_descriptions: int, *, root: str, folder: str, dataset: str,
                    names: list[str]) -> TextBank:
    """The dataset's description bank from the configured backend, post-processed and checked."""
    if params.backend == "none":
        return TextBank(list(names), None, {"backend": "none"})
    raw, meta = _raw_sentences(params, root, folder, dataset, names)
    if raw is None:  # file backend, no file for this dataset, and params allow that
        return TextBank(list(names), None, {"backend": params.backend, **meta})
    sentences = clean_sentences(raw)
    require_minimum(names, sentences, min_descriptions, f"descriptions {dataset} ({params.backend})")
    return TextBank(list(names), sentences, {"backend": params.backend, **meta})


def write_text_bank(out: str | Path, bank: TextBank) -> None:
    """`out`/descriptions.json, atomically (the whole folder appears at once or not at all)."""
    with atomic_dir(out) as tmp:
        (Path(tmp) / TEXT_BANK_FILE).write_text(dumps_json(bank.document()))


def read_text_bank(folder: str | Path, names: list[str]) -> TextBank:
    """The bank written by the descriptions stage; it must be for exactly these classes, in this order."""
    path = Path(folder) / TEXT_BANK_FILE
    if not path.is_file():
        raise UserError(f"{path}: description bank not found (run the descriptions stage first)")
    doc = read_json(path)
    if doc.get("classnames") != list(names):
        raise UserError(f"{path}: written for other classes than the dataset's shards; rerun the descriptions "
                        "stage")
    return TextBank(doc["classnames"], doc["sentences"], doc["source"])
