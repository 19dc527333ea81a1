"""Description backend `file`: CuPL and classify-by-description (CBD) JSON files, matched to a dataset's classes.

Both formats are `{classname: [text, ...]}`. CuPL's texts are whole sentences, used as they are. CBD's are
descriptors ("a long neck", "has webbed feet", "black and white stripes") that CBD turns into prompts of the form
"{classname}, which (is/has) {descriptor}"; our reading of which verb to use is in `cbd_sentence`.

Matching: a file key matches a class when both are equal after `normalise_key` (case, underscores and runs of
whitespace ignored). Every class must be matched (a missing class is an error naming it; a class is never
silently dropped); file keys that match no class are reported in the bank's metadata. Two classes with the same
name (ImageNet's "missile" and "sunglasses" pairs: CuPL's ImageNet file has 998 keys for 1000 classes) both get
the file's one entry for that name.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from promptlab.errors import UserError
from promptlab.io import read_json

if TYPE_CHECKING:
    from promptlab.config import DescriptionFileParams

# A descriptor starting with one of these already carries its verb: "which {descriptor}" ("which can fly").
_VERB_STARTS = {"has", "have", "is", "are", "can", "may", "might", "will", "often", "usually", "typically",
                "sometimes", "looks", "appears"}
# A descriptor starting with an article names what the class is: "which is {descriptor}" ("which is a bird").
_ARTICLES = {"a", "an", "the"}


def normalise_key(name: str) -> str:
    """Class-name matching key for description files: case, underscores and whitespace do not matter."""
    return " ".join(name.replace("_", " ").lower().split())


def cbd_sentence(classname: str, descriptor: str) -> str:
    """Our reading of CBD's prompt: "{classname}, which is {d}" when the descriptor starts with an article,
    "{classname}, which {d}" when it starts with its own verb or adverb (has, can, often, ...), otherwise
    "{classname}, which has {d}" (CBD's descriptors are mostly noun phrases of parts: "a red comb" is the one
    exception its article rule catches)."""
    descriptor = descriptor.strip()
    first = descriptor.split(" ", 1)[0].lower()
    if first in _ARTICLES:
        return f"{classname}, which is {descriptor}"
    if first in _VERB_STARTS:
        return f"{classname}, which {descriptor}"
    return f"{classname}, which has {descriptor}"


def read_description_file(path: Path) -> dict[str, list[str]]:
    """The file's {key: [text, ...]} mapping; any other shape is an error naming the file and the key."""
    if not path.is_file():
        raise UserError(f"{path}: description file not found (prompts.descriptions.file.path)")
    try:
        data = read_json(path)
    except ValueError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object {{classname: [text, ...]}}")
    for key, texts in data.items():
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise UserError(f"{path}: entry {key!r} must be a list of strings")
    return data


def match_descriptions(names: list[str], entries: dict[str, list[str]], source: str
                       ) -> tuple[list[list[str]], list[str]]:
    """(texts per class in `names` order, file keys that match no class). Missing classes and two file keys
    that normalise to the same class are errors naming them."""
    by_key: dict[str, str] = {}
    for key in entries:
        other = by_key.setdefault(normalise_key(key), key)
        if other != key:
            raise UserError(f"{source}: keys {other!r} and {key!r} name the same class")
    missing = [n for n in names if normalise_key(n) not in by_key]
    if missing:
        raise UserError(f"{source}: no descriptions for {len(missing)} of {len(names)} classes: "
                        f"{', '.join(map(repr, missing[:10]))}{' ...' if len(missing) > 10 else ''}")
    known = {normalise_key(n) for n in names}
    unmatched = sorted(k for k in entries if normalise_key(k) not in known)
    return [list(entries[by_key[normalise_key(n)]]) for n in names], unmatched


def description_file_path(params: "DescriptionFileParams", root: str, folder: str, dataset: str) -> Path:
    """prompts.descriptions.file.path with its placeholders filled for one dataset."""
    try:
        return Path(params.path.format(root=root, folder=folder, dataset=dataset))
    except (KeyError, IndexError, ValueError) as exc:
        raise UserError(f"prompts.descriptions.file.path {params.path!r}: unknown placeholder {exc} "
                        "(allowed: {root}, {folder}, {dataset})") from None


def load_file_descriptions(params: "DescriptionFileParams", root: str, folder: str, dataset: str,
                           names: list[str]) -> tuple[list[list[str]] | None, dict]:
    """(sentences per class, metadata: path, format, sha256 of the file, unmatched keys); (None, metadata) for
    a missing file when if_missing is none."""
    path = description_file_path(params, root, folder, dataset)
    if not path.exists() and params.if_missing == "none":
        return None, {"path": str(path), "format": params.format, "missing": True}
    texts, unmatched = match_descriptions(names, read_description_file(path), str(path))
    if params.format == "cbd":
        texts = [[cbd_sentence(n, d) for d in per_class] for n, per_class in zip(names, texts)]
    meta = {"path": str(path), "format": params.format, "unmatched_keys": unmatched,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    return texts, meta
