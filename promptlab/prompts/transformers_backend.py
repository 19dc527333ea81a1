"""Description backend `transformers`: a local Hugging Face causal LM asked CuPL's questions.

transformers is an optional dependency (the `llm` extra), imported only when this backend runs. A tokenizer with
a chat template (an instruct model) gets each question as one user turn; a plain LM gets the question followed by
a space, to continue. Sampling follows the recipe (temperature, max_tokens as new tokens, samples as sequences
per question; temperature 0 means one greedy answer). Torch's generator is seeded per question from
`transformers.seed` and the question text, so answers do not depend on the order classes are asked in and a rerun
with the same model on the same device repeats them. Classes are asked one at a time (one model in memory).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import torch

from promptlab.errors import UserError
from promptlab.prompts.llm import llm_descriptions, recipe_settings

if TYPE_CHECKING:
    from promptlab.config import LLMRecipeParams, TransformersParams


def _import_transformers():
    try:
        import transformers
    except ImportError:
        raise UserError("prompts.descriptions.backend 'transformers' needs the optional dependency: "
                        "`uv sync --extra llm` (or `pip install 'promptlab[llm]'`)") from None
    return transformers


class LocalLM:
    """Loads the model on the first question, so a rerun whose answers are all cached never loads it."""

    def __init__(self, params: "TransformersParams", recipe: "LLMRecipeParams"):
        self.params, self.recipe = params, recipe
        self.tokenizer = self.model = None
        _import_transformers()  # a missing extra fails before any work

    def _load(self) -> None:
        transformers = _import_transformers()
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.params.model)
            model = transformers.AutoModelForCausalLM.from_pretrained(self.params.model)
        except (OSError, ValueError) as exc:
            raise UserError(f"prompts.descriptions.transformers.model {self.params.model!r}: cannot load "
                            f"({exc})") from None
        self.model = model.to(self.params.device).eval()

    def _prompt_ids(self, question: str) -> torch.Tensor:
        if getattr(self.tokenizer, "chat_template", None):
            ids = self.tokenizer.apply_chat_template([{"role": "user", "content": question}],
                                                     add_generation_prompt=True, return_tensors="pt")
            ids = ids["input_ids"] if not isinstance(ids, torch.Tensor) else ids
        else:
            ids = self.tokenizer(question + " ", return_tensors="pt")["input_ids"]
        return ids.to(self.params.device)

    def _pad_id(self) -> int | None:
        pad = self.tokenizer.pad_token_id
        return pad if pad is not None else self.tokenizer.eos_token_id

    @torch.no_grad()
    def ask(self, question: str) -> list[str]:
        if self.model is None:
            self._load()
        digest = hashlib.sha256(f"{self.params.seed}|{question}".encode()).hexdigest()
        torch.manual_seed(int(digest[:15], 16))
        ids = self._prompt_ids(question)
        sample = self.recipe.temperature > 0
        out = self.model.generate(
            ids, attention_mask=torch.ones_like(ids), do_sample=sample, max_new_tokens=self.recipe.max_tokens,
            num_return_sequences=self.recipe.samples if sample else 1,
            pad_token_id=self._pad_id(),
            **({"temperature": self.recipe.temperature, "top_k": 0} if sample else {}))
        return self.tokenizer.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)


def transformers_descriptions(params: "TransformersParams", recipe: "LLMRecipeParams", names: list[str]
                              ) -> tuple[list[list[str]], dict]:
    """(sentences per class, generation settings) from the local model, resuming from the answer cache."""
    settings = {"backend": "transformers", "model": params.model, "seed": params.seed,
                "recipe": recipe_settings(recipe)}
    return llm_descriptions(names, recipe, settings, LocalLM(params, recipe).ask, concurrency=1)
