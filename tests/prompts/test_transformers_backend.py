"""Description backend `transformers` with a tiny random GPT-2 and a word-level tokenizer built here, offline."""

from __future__ import annotations

import shutil
import sys

import pytest

from promptlab.config import validate_params
from promptlab.errors import UserError
from promptlab.prompts.descriptions import build_text_bank

transformers = pytest.importorskip("transformers")  # in the dev group; the `llm` extra for users

WORDS = ["[UNK]", "[EOS]", ".", "a", "the", "red", "blue", "circle", "square", "round", "shape", "with", "corners",
         "describe", "what", "looks", "like", "how", "can", "you", "identify", "?", "bright", "flat", "edge"]
NAMES = ["red circle", "blue square"]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder = tmp_path_factory.mktemp("tiny_lm")
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="[EOS]",
                                                pad_token="[EOS]")
    fast.save_pretrained(folder)
    config = transformers.GPT2Config(vocab_size=len(WORDS), n_positions=64, n_embd=16, n_layer=1, n_head=2,
                                     bos_token_id=1, eos_token_id=1)
    import torch
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def _params(model, cache, **overrides):
    raw = {"backend": "transformers", "transformers": {"model": str(model), "seed": overrides.pop("seed", 0)},
           "recipe": {"questions": ["Describe what a {} looks like", "How can you identify a {}?"], "samples": 4,
                      "temperature": 1.0, "max_tokens": 6, "cache": str(cache), **overrides}}
    return validate_params({"prompts": {"descriptions": raw}}).prompts.descriptions


def _build(params):
    return build_text_bank(params, 1, root="r", folder="f", dataset="toy", names=NAMES)


def test_sampled_answers_are_vocabulary_sentences_and_repeat_with_the_seed(tiny_lm, tmp_path):
    bank = _build(_params(tiny_lm, tmp_path / "c1"))
    again = _build(_params(tiny_lm, tmp_path / "c2"))  # a fresh cache: generated again
    assert bank.sentences == again.sentences
    for per_class in bank.sentences:
        assert 1 <= len(per_class) <= 2 * 4
        for sentence in per_class:
            assert sentence.endswith(".") and set(sentence[:-1].split()) <= set(WORDS) - {"[UNK]", "[EOS]", "."}
    other_seed = _build(_params(tiny_lm, tmp_path / "c3", seed=1))
    assert other_seed.sentences != bank.sentences
    assert bank.source == {"backend": "transformers", "model": str(tiny_lm), "seed": 0, "cache": bank.source["cache"],
                           "recipe": {"questions": ["Describe what a {} looks like", "How can you identify a {}?"],
                                      "samples": 4, "temperature": 1.0, "max_tokens": 6, "stop": "."}}


def test_greedy_decoding_gives_one_answer_per_question(tiny_lm, tmp_path):
    """temperature 0: each question's answer is the model's own greedy continuation of "<question> ", decoded
    here independently with transformers and turned into a sentence CuPL's way."""
    import torch

    from promptlab.prompts.llm import answer_sentence

    bank = _build(_params(tiny_lm, tmp_path / "c", temperature=0.0))
    tok = transformers.AutoTokenizer.from_pretrained(tiny_lm)
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_lm).eval()
    questions = ["Describe what a {} looks like", "How can you identify a {}?"]
    for name, sentences in zip(NAMES, bank.sentences):
        expected = []
        for q in questions:
            ids = tok(q.format(name) + " ", return_tensors="pt")["input_ids"]
            with torch.no_grad():
                out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=6,
                                     pad_token_id=tok.pad_token_id)
            text = answer_sentence(tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True), ".")
            if text and text not in expected:  # empty answers and repeats are dropped, first kept
                expected.append(text)
        assert sentences == expected and 1 <= len(sentences) <= 2


def test_a_cached_run_never_loads_the_model(tiny_lm, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_lm, model)
    first = _build(_params(model, tmp_path / "c"))
    shutil.rmtree(model)  # gone: only the cache can answer now
    assert _build(_params(model, tmp_path / "c")).sentences == first.sentences


def test_missing_model_folder_is_named(tmp_path):
    with pytest.raises(UserError, match=r"prompts.descriptions.transformers.model '.*nowhere': cannot load"):
        _build(_params(tmp_path / "nowhere", tmp_path / "c"))


def test_without_the_extra_the_error_says_what_to_install(tiny_lm, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail
    with pytest.raises(UserError, match=r"needs the optional dependency: `uv sync --extra llm`"):
        _build(_params(tiny_lm, tmp_path / "c"))
