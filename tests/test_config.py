"""params.yaml schema: defaults, and one-line UserErrors that name the offending key."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from pydantic import ValidationError

from promptlab.config import load_params, validate_params
from promptlab.data.registry import DATASETS
from promptlab.errors import UserError
from promptlab.methods import method_class, methods

REGISTRY = {name: method_class(name) for name in methods()}


def _error(raw: dict) -> str:
    with pytest.raises(UserError) as info:
        validate_params(raw)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("params.yaml: ")
    return msg


# --- defaults ------------------------------------------------------------------------------------------------------


def test_empty_params_give_the_documented_defaults():
    p = validate_params({})
    assert p.model.name == "promptlab-tiny" and p.model.pretrained is None and p.model.device == "cpu"
    assert (p.world.seed, p.world.image_size, p.world.train_per_class, p.world.val_per_class,
            p.world.test_per_class) == (0, 32, 32, 8, 24)
    assert p.world.shifted_domains == ["sketch", "noise"]
    assert p.data.root == "data/raw"
    assert p.data.datasets == ["synthetic"]
    assert p.data.shots == 16
    assert p.data.seeds == [1, 2, 3]
    assert p.data.shard_maxcount == 2000
    assert p.data.bad_images == "error"
    assert p.methods == ["zeroshot", "coop"]
    assert p.eval.domain_shift.source == "synthetic"
    assert p.eval.domain_shift.targets == ["synthetic_sketch", "synthetic_noise"]
    assert p.coop.n_ctx == 4 and p.coop.ctx_init == "a photo of a"
    # every registered method gets its own section, filled with its Config defaults
    for name, cls in REGISTRY.items():
        assert getattr(p, name) == cls.Config()


def test_prompt_bank_defaults_read_the_worlds_own_descriptions_with_cupls_recipe():
    from promptlab.config import CUPL_QUESTIONS

    d = validate_params({}).prompts.descriptions
    assert (d.backend, d.file.path, d.file.format, d.file.if_missing) == (
        "file", "{root}/{folder}/descriptions.json", "cupl", "error")
    assert d.recipe.questions == CUPL_QUESTIONS and len(CUPL_QUESTIONS) == 5
    assert (d.recipe.samples, d.recipe.temperature, d.recipe.max_tokens, d.recipe.stop) == (10, 0.99, 50, ".")
    assert d.openai.api_key_env == "OPENAI_API_KEY"
    assert validate_params({}).prompts.templates == {} and validate_params({}).prompts.min_descriptions == 1


def test_none_is_the_same_as_empty():
    assert validate_params(None) == validate_params({})


def test_given_values_override_defaults_and_the_rest_stay_default():
    p = validate_params({"data": {"shots": 4, "seeds": [7]}, "coop": {"n_ctx": 8}})
    assert (p.data.shots, p.data.seeds, p.coop.n_ctx) == (4, [7], 8)
    assert p.data.datasets == ["synthetic"] and p.coop.ctx_init == "a photo of a"


def test_every_default_dataset_id_is_registered():
    p = validate_params({})
    for i in [*p.data.datasets, p.eval.domain_shift.source, *p.eval.domain_shift.targets]:
        assert i in DATASETS
    assert all(DATASETS[t].test_only for t in p.eval.domain_shift.targets)


# --- errors name the key ----------------------------------------------------------------------------------------------


def test_unknown_top_level_key():
    assert _error({"foo": 1}) == "params.yaml: foo: unknown key"


def test_unknown_nested_key():
    assert _error({"coop": {"foo": 1}}) == "params.yaml: coop.foo: unknown key"


def test_wrong_type_names_the_key_and_the_value():
    msg = _error({"coop": {"n_ctx": "x"}})
    assert msg.startswith("params.yaml: coop.n_ctx: ")
    assert "(got 'x')" in msg


def test_out_of_range_value_names_the_key():
    msg = _error({"data": {"shots": 0}})
    assert msg.startswith("params.yaml: data.shots: ")
    assert "(got 0)" in msg


def test_inf_and_nan_are_refused_in_every_float_key():
    assert _error({"coop": {"lr": float("inf")}}) == "params.yaml: coop.lr: Input should be a finite number (got inf)"
    assert _error({"pretrain": {"weight_decay": float("nan")}}).startswith("params.yaml: pretrain.weight_decay: ")
    # YAML 1.1 reads 1e-05 (no dot: `dvc exp run -S coop.lr=1e-5` writes it so) as text: still a number here
    assert validate_params(yaml.safe_load("coop: {lr: 1e-05}")).coop.lr == 1e-5


@pytest.mark.parametrize("key, value, repeated", [
    ("data.seeds", [1, 2, 1], "1"), ("methods", ["zeroshot", "coop", "coop"], "coop"),
    ("data.datasets", ["synthetic", "synthetic"], "synthetic"),
    ("data.eval_datasets", ["synthetic_sketch", "synthetic_noise", "synthetic_sketch"], "synthetic_sketch"),
    ("eval.protocols", ["base2new", "base2new"], "base2new"),
    ("eval.domain_shift.targets", ["synthetic_noise", "synthetic_noise"], "synthetic_noise"),
    ("eval.few_shot.methods", ["coop", "coop"], "coop"),
])
def test_a_list_that_repeats_an_item_is_refused(key, value, repeated):
    """A repeated seed, method or dataset would run, shard or score twice under one name."""
    raw: dict = {}
    *sections, last = key.split(".")
    node = raw
    for section in sections:
        node = node.setdefault(section, {})
    node[last] = value
    assert _error(raw) == f"params.yaml: {key}: {repeated} listed twice"


def test_seeds_cannot_be_empty():
    assert _error({"data": {"seeds": []}}).startswith("params.yaml: data.seeds: List should have at least 1 item")


def test_bad_images_allows_only_error_or_skip():
    assert validate_params({"data": {"bad_images": "skip"}}).data.bad_images == "skip"
    assert _error({"data": {"bad_images": "ignore"}}) == \
        "params.yaml: data.bad_images: Input should be 'error' or 'skip' (got 'ignore')"


def test_unknown_method():
    msg = _error({"methods": ["zeroshot", "nope"]})
    assert msg.startswith("params.yaml: methods: unknown method 'nope'")
    for name in REGISTRY:
        assert name in msg  # lists the allowed names


def test_unknown_dataset_in_data_datasets():
    msg = _error({"data": {"datasets": ["synthetic", "nope"]}})
    assert msg.startswith("params.yaml: data.datasets: unknown dataset 'nope'")


def test_unknown_domain_shift_target():
    msg = _error({"eval": {"domain_shift": {"targets": ["nope"]}}})
    assert msg.startswith("params.yaml: eval.domain_shift.targets.0: unknown dataset 'nope'")


def test_domain_shift_target_overlapping_data_datasets():
    msg = _error({"data": {"datasets": ["synthetic", "caltech101"]},
                  "eval": {"domain_shift": {"targets": ["caltech101"]}}})
    assert "eval.domain_shift.targets" in msg
    assert "['caltech101']" in msg


def test_domain_shift_target_equal_to_the_source():
    msg = _error({"data": {"datasets": ["caltech101"]},
                  "eval": {"domain_shift": {"source": "caltech101", "targets": ["caltech101"]}}})
    assert "eval.domain_shift.targets must not repeat the source 'caltech101'" in msg


def test_eval_datasets_must_not_repeat_trained_datasets():
    msg = _error({"data": {"datasets": ["synthetic", "caltech101"], "eval_datasets": ["caltech101"]}})
    assert "data.eval_datasets must not repeat data.datasets: ['caltech101']" in msg


def test_targets_must_be_sharded():
    msg = _error({"data": {"eval_datasets": ["synthetic_noise", "synthetic_shapes"]}})
    assert "eval.domain_shift.targets ['synthetic_sketch'] must be listed in data.eval_datasets" in msg
    cross = {"protocols": ["cross_dataset"], "cross_dataset": {"targets": ["dtd"]}}
    msg = _error({"eval": cross})
    assert "eval.cross_dataset.targets ['dtd'] must be listed in data.eval_datasets or data.datasets" in msg
    # a cross-dataset target may be a trained dataset (CoCoOp: ImageNet -> the other base-to-new datasets)
    p = validate_params({"data": {"datasets": ["synthetic", "dtd"]}, "eval": cross})
    assert p.eval.cross_dataset.targets == ["dtd"]
    # a protocol that does not run is not checked (the schema default runs base2new and domain_shift)
    p = validate_params({"eval": {"cross_dataset": {"targets": ["dtd"]}}})
    assert p.eval.protocols == ["base2new", "domain_shift"]


def test_few_shot_settings():
    few = lambda **kw: {"eval": {"protocols": ["few_shot"], "few_shot": kw}}  # noqa: E731
    assert "eval.few_shot.shots [1, 2, 4, 8, 16] go above data.shots=8" in _error({"data": {"shots": 8}, **few()})
    assert "must be increasing positive shot counts" in _error(few(shots=[4, 2]))
    assert "must be increasing positive shot counts" in _error(few(shots=[0, 2]))
    assert "one value per shot count [1, 2]" in _error(few(shots=[1, 2], epochs={1: 5}))
    assert "eval.few_shot.datasets ['dtd'] must be in data.datasets" in _error(few(datasets=["dtd"]))
    assert "unknown methods ['nope']" in _error(few(methods=["nope"]))
    assert "eval.protocols.0" in _error({"eval": {"protocols": ["zero_shot"]}})
    p = validate_params(few(shots=[1, 16], epochs={1: 50, 16: 200}))
    assert p.eval.few_shot.epochs == {1: 50, 16: 200}


def test_domain_shift_source_must_be_a_trained_dataset():
    msg = _error({"data": {"datasets": ["synthetic"]},
                  "eval": {"domain_shift": {"source": "caltech101", "targets": ["synthetic_sketch"]}}})
    assert "eval.domain_shift.source" in msg


def test_test_only_dataset_cannot_be_trained():
    msg = _error({"data": {"datasets": ["synthetic_sketch"]}})
    assert "data.datasets" in msg and "test-only" in msg


def test_source_name_in_message_is_the_given_one():
    with pytest.raises(UserError) as info:
        validate_params({"foo": 1}, source="my.yaml")
    assert str(info.value) == "my.yaml: foo: unknown key"


def test_params_are_frozen():
    p = validate_params({})
    with pytest.raises(ValidationError):
        p.data.shots = 3
    assert p.data.shots == 16


# --- load_params -------------------------------------------------------------------------------------------------------


def test_load_params_reads_a_file(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("data:\n  shots: 2\n  seeds: [5, 6]\ncoop:\n  n_ctx: 2\n")
    p = load_params(f)
    assert (p.data.shots, p.data.seeds, p.coop.n_ctx) == (2, [5, 6], 2)


def test_load_params_empty_file_gives_defaults(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("# nothing\n")
    assert load_params(f) == validate_params({})


def test_load_params_missing_file(tmp_path):
    f = tmp_path / "absent.yaml"
    with pytest.raises(UserError) as info:
        load_params(f)
    msg = str(info.value)
    assert "\n" not in msg and str(f) in msg and "not found" in msg


def test_load_params_invalid_yaml(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("data: [1, 2\ncoop: {n_ctx: 3\n")
    with pytest.raises(UserError) as info:
        load_params(f)
    msg = str(info.value)
    assert "\n" not in msg and str(f) in msg and "YAML" in msg


def test_load_params_non_mapping_top_level(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("- data\n- coop\n")
    with pytest.raises(UserError) as info:
        load_params(f)
    msg = str(info.value)
    assert "\n" not in msg and str(f) in msg and "mapping" in msg


def test_load_params_errors_name_the_file_and_the_key(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("coop:\n  n_ctx: x\n")
    with pytest.raises(UserError) as info:
        load_params(f)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{f}: coop.n_ctx: ")


def test_the_paper_protocol_file_is_valid_params():
    """configs/paper.yaml is the documented one-switch paper protocol: it must always validate."""
    from pathlib import Path

    from promptlab.config import load_params

    p = load_params(Path(__file__).resolve().parents[1] / "configs/paper.yaml")
    assert (p.model.name, p.model.pretrained, p.data.shots, p.data.seeds) == ("ViT-B-16-quickgelu", "openai", 16,
                                                                             [1, 2, 3])
    assert len(p.data.datasets) == 11 and p.eval.domain_shift.source == "imagenet"
    assert (p.coop.epochs, p.cocoop.epochs, p.kgcoop.epochs, p.kgcoop.batch_size) == (200, 10, 100, 128)
    files = p.prompts.descriptions.file
    assert (p.prompts.descriptions.backend, files.path, files.format, files.if_missing) == (
        "file", "{root}/{folder}/cupl.json", "cupl", "none")  # CuPL's published files; none for EuroSAT


# --- prompts ------------------------------------------------------------------------------------------------------


def test_user_templates_are_validated_and_kept():
    p = validate_params({"prompts": {"templates": {"blurry": ["a blurry photo of a {}.", "a {} in {{braces}}."]}}})
    assert p.prompts.templates == {"blurry": ["a blurry photo of a {}.", "a {} in {{braces}}."]}
    for name in ("clip80", "clip7", "dataset"):
        assert f"template set name {name!r} is taken" in _error({"prompts": {"templates": {name: ["a {}."]}}})
    assert _error({"prompts": {"templates": {"x": ["a {} and {}."]}}}) == (
        "params.yaml: prompts.templates: 'a {} and {}.' must contain exactly one {} for the class name")
    assert "'no class.' must contain exactly one {}" in _error({"prompts": {"templates": {"x": ["no class."]}}})
    assert "'a {name}.' must contain exactly one {}" in _error({"prompts": {"templates": {"x": ["a {name}."]}}})
    assert "template set 'x' is empty" in _error({"prompts": {"templates": {"x": []}}})


def test_recipe_questions_need_the_class_placeholder():
    msg = _error({"prompts": {"descriptions": {"recipe": {"questions": ["Describe it"]}}}})
    assert msg.startswith("params.yaml: prompts.descriptions.recipe.questions: 'Describe it' must contain")


def test_an_api_key_pasted_as_the_variable_name_is_refused_without_echoing_it():
    msg = _error({"prompts": {"descriptions": {"openai": {"api_key_env": "sk-live-abc123"}}}})
    assert msg == ("params.yaml: prompts.descriptions.openai.api_key_env: must be the NAME of an environment "
                   "variable (letters, digits, _), not the key")
    assert "sk-live" not in msg


def test_unknown_backend_and_transformers_without_a_model():
    assert _error({"prompts": {"descriptions": {"backend": "gpt"}}}).startswith(
        "params.yaml: prompts.descriptions.backend: Input should be 'file', 'openai', 'transformers' or 'none'")
    assert _error({"prompts": {"descriptions": {"backend": "transformers"}}}) == (
        "params.yaml: prompts.descriptions: backend 'transformers' needs transformers.model (a local model folder)")


def test_the_old_flat_descriptions_key_is_a_clear_error():
    msg = _error({"prompts": {"descriptions": "{root}/{folder}/descriptions.json"}})
    assert msg.startswith("params.yaml: prompts.descriptions: Input should be a valid dictionary")


def test_one_registration_binds_name_params_block_and_class_and_validation_needs_no_torch():
    from promptlab.methods.base import PromptMethod

    for name, spec in methods().items():
        cls = REGISTRY[name]
        assert issubclass(cls, PromptMethod) and cls.name == name and cls.Config is spec.config
        assert cls.__module__ == f"promptlab.methods.{name}.method"  # its own folder
        assert spec.config.__module__ == f"promptlab.methods.{name}.config"
        assert isinstance(getattr(validate_params({}), name), spec.config)  # its params section
    # validating params (every stage's first step) must not import torch: the data, description and report
    # stages never touch a model, and torch + open_clip cost ~6 s per process (docs/architecture.md "Start-up cost")
    code = ("import sys; from promptlab.config import validate_params; validate_params({}); "
            "print(sorted(m for m in ('torch', 'open_clip', 'great_expectations') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- model.pretrained: a missing file no stage writes stops every stage at once ---------------------------------


def test_a_missing_checkpoint_that_no_stage_writes_stops_load_params(tmp_path, monkeypatch):
    from pathlib import Path

    from promptlab.config import load_params

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(tmp_path)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"model": {"pretrained": "ckpt/mine.safetensors"}}))
    with pytest.raises(UserError) as info:
        load_params(params)
    assert str(info.value) == (f"{params}: model.pretrained: checkpoint not found: ckpt/mine.safetensors (no stage "
                               "of dvc.yaml writes it; give an existing file, an open_clip tag such as 'openai', "
                               "or null)")
    (tmp_path / "dvc.yaml").write_text((repo / "dvc.yaml").read_text())
    with pytest.raises(UserError, match="checkpoint not found: ckpt/mine.safetensors"):
        load_params(params)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt/mine.safetensors").write_bytes(b"x")
    assert load_params(params).model.pretrained == "ckpt/mine.safetensors"
    # the default checkpoint is the pretrain stage's output: missing until that stage runs, and accepted
    params.write_text((repo / "params.yaml").read_text())
    assert not (tmp_path / "models").exists()
    assert load_params(params).model.pretrained == "models/tiny_clip/open_clip_model.safetensors"
    params.write_text(yaml.safe_dump({"model": {"pretrained": "models/tiny_clip_old/open_clip_model.safetensors"}}))
    with pytest.raises(UserError, match="checkpoint not found: models/tiny_clip_old/"):
        load_params(params)
