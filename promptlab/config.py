"""The one schema of params.yaml.

Every params key is defined here, or (per-method hyperparameters) in its method's params block
(promptlab/methods/<name>/config.py), which this module collects through the method registry. Stages call `load_params()` first: an unknown key, a
wrong type or an unknown method/dataset name stops the stage with one line naming the key.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, Field, ValidationError, ValidationInfo, create_model, field_validator, model_validator

from promptlab.clip.resolve import looks_like_path  # torch-free
from promptlab.errors import UserError
from promptlab.schema import Distinct, StrictModel


def _known_specs(info: ValidationInfo | None) -> dict:
    """The built-in datasets and the data.custom_datasets of the params being validated (validated before the
    keys that name datasets; validate_params passes them in the validation context)."""
    from promptlab.data.registry import BUILTIN

    custom = (info.context or {}).get("custom_datasets", {}) if info is not None else {}
    return {**BUILTIN, **custom}


def _check_dataset_id(dataset_id: str, info: ValidationInfo) -> str:
    known = _known_specs(info)
    if dataset_id not in known:
        raise ValueError(f"unknown dataset {dataset_id!r} (allowed: {', '.join(sorted(known))}; your own: declare "
                         "it under data.custom_datasets)")
    return dataset_id


DatasetId = Annotated[str, AfterValidator(_check_dataset_id)]  # a datasets.yaml or data.custom_datasets id



class ModelParams(StrictModel):
    """The CLIP every model stage loads. The name/tag combination, the QuickGELU match of OpenAI weights and the
    device are checked by promptlab.clip.model.check_model (it needs open_clip and torch) at the world and
    pretrain stages, the first a fresh `dvc repro` runs; a missing checkpoint file by load_params, below."""

    name: str = "promptlab-tiny"  # open_clip architecture name or the project's own config name
    pretrained: str | None = None  # open_clip tag ("openai", ...), a local checkpoint path, or null
    device: str = "cpu"


class WorldParams(StrictModel):
    """The embedded synthetic world (docs/architecture.md "Raw data")."""

    seed: int = 0
    image_size: int = Field(32, ge=8)
    train_per_class: int = Field(32, ge=1)
    val_per_class: int = Field(8, ge=1)
    test_per_class: int = Field(24, ge=1)
    shifted_domains: list[Literal["sketch", "noise"]] = ["sketch", "noise"]
    # Each (colour, shape) class of the labelled datasets drawn in its own shade, which no caption names, so
    # few-shot training has something to learn that zero-shot prompts miss (docs/architecture.md "Raw data").
    class_shades: bool = True


class PretrainParams(StrictModel):
    """Contrastive pretraining of the tiny CLIP on captioned synthetic images."""

    model: str = "promptlab-tiny"  # the project's own open_clip config
    seed: int = 0
    steps: int = Field(600, ge=1)
    batch_size: int = Field(64, ge=2)  # 64 x 600 beats 128 x 300 (same compute) by ~6 zero-shot points
    lr: float = Field(3e-4, gt=0)  # 1e-3 and above: the tiny ViT learns colour but never shape
    weight_decay: float = Field(0.1, ge=0)
    warmup_steps: int = Field(40, ge=0)
    domain_weights: dict[Literal["photo", "sketch", "noise"], float] = {"photo": 0.8, "sketch": 0.1, "noise": 0.1}
    eval_per_class: int = Field(10, ge=1)
    hard_batch_colours: int = Field(2, ge=0, le=8)  # every other batch from this many colours only (0 = off)


class EmbeddedParams(StrictModel):
    """The toy parts the pipeline builds for itself, each a DVC matrix stage over a one-name list: [] generates
    no stage (real data and a real CLIP, configs/paper.yaml). See docs/pipeline.md."""

    world: list[Literal["synthetic"]] = Field(["synthetic"], max_length=1)  # stage world@synthetic -> data/raw
    clip: list[Literal["promptlab-tiny"]] = Field(["promptlab-tiny"], max_length=1)  # pretrain@promptlab-tiny
    # The file the always-present `listing` stage waits for (DVC orders stages by files alone): the world's
    # summary when the pipeline builds data.root, else any file that exists (params.yaml).
    after_world: str = "data/raw/world.json"
    # The file the `model` stage waits for and hashes: the checkpoint when model.pretrained is a local file
    # (the tiny CLIP's when stage pretrain builds it), params.yaml for an open_clip tag (nothing to wait for).
    after_clip: str = "models/tiny_clip/open_clip_model.safetensors"


SPLIT_NAMES = Literal["train", "val", "test"]


class CustomDatasetParams(StrictModel):
    """A dataset of your own (or a cut-down copy of one of CoOp's) under data.root, read by the same readers as
    the built-in ones: either a split_zhou JSON (`split`) or one folder per class in each split folder
    (`split_folders`; the class folders' names are the class names). README "Your own dataset"."""

    folder: str  # the dataset's folder under data.root
    images: str = "images"  # its image folder (inside `folder`); split entries / split folders are relative to it
    split: str | None = None  # a split_zhou JSON in `folder`: {"train": [[path, label, classname], ...], ...}
    split_folders: dict[SPLIT_NAMES, str] | None = None  # class-folder layout: split -> folder under `images`
    template: str = "a photo of a {}."  # the hand-crafted prompt (zero-shot, KgCoOp/ProGrad's teacher, ...)
    rename: dict[str, str] = {}  # raw class name -> the name prompted (then `_` -> space)
    n_classes: int | None = Field(None, ge=1)  # the class count to insist on (null: whatever the data has)
    relabel: bool = False  # renumber the labels present 0..N-1 (a split file cut down to a class subset)
    val_from_train: bool = False  # no val split: draw the few-shot val from train, disjoint from the shots
    test_only: bool = False  # test split only: a domain-shift or cross-dataset target (data.eval_datasets)

    @field_validator("template")
    @classmethod
    def _template_names_the_class(cls, template: str) -> str:
        return _one_placeholder(template)

    @model_validator(mode="after")
    def _one_layout(self):
        if (self.split is None) == (self.split_folders is None):
            raise ValueError("give exactly one of split (a split_zhou JSON) or split_folders (class folders)")
        needed = ["test"] if self.test_only else ["train", "test"]
        missing = [s for s in needed if s not in (self.split_folders or {s: ""})]
        if missing:
            raise ValueError(f"split_folders needs {' and '.join(missing)}")
        if self.split_folders is not None and self.relabel:
            raise ValueError("relabel is for split files (class folders are numbered 0..N-1 already)")
        return self


class DataParams(StrictModel):
    # datasets of your own, {id: {...}}: usable in every key below that names datasets (validated first)
    custom_datasets: dict[str, CustomDatasetParams] = {}
    root: str = "data/raw"  # (contract) a folder laid out like CoOp's $DATA
    # (contract) dataset ids trained and evaluated base-to-new
    datasets: Annotated[list[str], Distinct] = ["synthetic"]
    shots: int = Field(16, ge=1)  # (contract)
    seeds: Annotated[list[int], Field(min_length=1), Distinct] = [1, 2, 3]  # (contract)
    shard_maxcount: int = Field(2000, ge=1)
    # Datasets sharded for their test split only: the domain-shift and cross-dataset targets not in `datasets`.
    eval_datasets: Annotated[list[DatasetId], Distinct] = ["synthetic_sketch", "synthetic_noise", "synthetic_shapes"]
    # a missing, zero-byte or undecodable image: stop the shard stage naming it (error), or leave it out and
    # record it in the shards' skipped.csv and the validation report (skip); few-shot draws avoid skipped items
    bad_images: Literal["error", "skip"] = "error"

    @field_validator("custom_datasets")
    @classmethod
    def _register_for_validation(cls, custom: dict[str, CustomDatasetParams], info: ValidationInfo):
        from promptlab.data.registry import BUILTIN

        for i in custom:
            if i in BUILTIN:
                raise ValueError(f"{i!r} is a built-in dataset id: give your own data its own id")
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", i):
                raise ValueError(f"dataset id {i!r}: letters, digits, _ and - only (it names folders)")
        if info.context is not None:
            info.context["custom_datasets"] = custom_specs(custom)
        return custom

    @field_validator("datasets")
    @classmethod
    def _known_datasets(cls, ids: list[str], info: ValidationInfo) -> list[str]:
        for i in ids:
            if _check_dataset_id(i, info) and _known_specs(info)[i].test_only:
                raise ValueError(f"{i!r} is a test-only dataset (use it as an eval.domain_shift target)")
        return ids


def custom_specs(custom: dict[str, CustomDatasetParams]) -> dict:
    """data.custom_datasets -> {id: DatasetSpec} (promptlab.data.registry; torch-free)."""
    from promptlab.data.registry import custom_spec

    return {i: custom_spec(i, **c.model_dump()) for i, c in custom.items()}


class FeatureParams(StrictModel):
    batch_size: int = Field(256, ge=1)
    train_views: int = Field(4, ge=1)  # augmented views per training image, each encoded once (docs/protocols.md)
    crop_scale_min: float = Field(0.08, gt=0, le=1)  # CoOp's random-resized-crop scale range is (0.08, 1)
    seed: int = 0
    patches: bool = True  # also store projected patch tokens
    num_workers: int = Field(0, ge=0)  # DataLoader processes decoding shards ahead of the image tower (GPU)
    # image tower under autocast: bf16 (or fp16) on a GPU; fp32 on CPU (the default, byte-identical reruns)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    # processes encoding shares of the shards under torchrun, merged into byte-identical files (1: this process)
    nproc: int = Field(1, ge=1)


# CuPL's five questions (docs/methods/baselines.md "cupl"); {} is the class name.
CUPL_QUESTIONS = ["Describe what a {} looks like", "How can you identify a {}?", "What does a {} look like?",
                  "Describe an image from the internet of a {}", "A caption of an image of a {}:"]


def _one_placeholder(text: str) -> str:
    """A template or question must hold exactly one `{}` (the class name) and no other format field."""
    import string

    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc}") from None
    if fields != [""]:
        raise ValueError(f"{text!r} must contain exactly one {{}} for the class name")
    return text


class DescriptionFileParams(StrictModel):
    """backend: file. A JSON file per dataset, matched to the class names (case, `_` and spaces ignored)."""

    # {root} = data.root, {folder} = the dataset's folder under it, {dataset} = its id
    path: str = "{root}/{folder}/descriptions.json"
    # cupl: {classname: [sentence, ...]}; cbd (classify by description): {classname: [descriptor, ...]}
    format: Literal["cupl", "cbd"] = "cupl"
    # a dataset without a file: error, or none = no description bank for it (CuPL has no EuroSAT file)
    if_missing: Literal["error", "none"] = "error"


class LLMRecipeParams(StrictModel):
    """How an LLM backend (openai, transformers) is asked: CuPL's recipe by default."""

    questions: list[str] = Field(CUPL_QUESTIONS, min_length=1)  # each with one {} for the class name
    samples: int = Field(10, ge=1)  # answers per question and class
    temperature: float = Field(0.99, ge=0)  # sampling temperature
    max_tokens: int = Field(50, ge=1)  # tokens per answer at most
    stop: str | None = "."  # the answer ends before this string (null: at max_tokens)
    cache: str = "data/descriptions_cache"  # raw answers per class, outside DVC outs: a rerun resumes

    @field_validator("questions")
    @classmethod
    def _questions_name_the_class(cls, questions: list[str]) -> list[str]:
        return [_one_placeholder(q) for q in questions]


class OpenAIParams(StrictModel):
    """backend: openai. Any OpenAI-compatible POST {base_url}/chat/completions endpoint."""

    base_url: str = "https://api.openai.com/v1"  # e.g. http://localhost:8000/v1 for a local vLLM server
    model: str = "gpt-4o-mini"  # the endpoint's model name
    api_key_env: str | None = "OPENAI_API_KEY"  # NAME of the env variable holding the key (null: no key)
    concurrency: int = Field(4, ge=1)  # requests in flight at once
    max_retries: int = Field(5, ge=0)  # retries of a request after 429/5xx/timeout/connection error
    backoff_s: float = Field(1.0, ge=0)  # first retry delay, doubled each retry (Retry-After wins)
    timeout_s: float = Field(60.0, gt=0)  # per request

    @field_validator("api_key_env")
    @classmethod
    def _a_variable_name(cls, name: str | None) -> str | None:
        if name is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):  # never echo it: may be a key
            raise ValueError("must be the NAME of an environment variable (letters, digits, _), not the key")
        return name


class TransformersParams(StrictModel):
    """backend: transformers. A local Hugging Face causal LM (install the `llm` extra)."""

    model: str | None = None  # a local model folder (or a hub name your machine can fetch)
    device: str = "cpu"  # torch device
    seed: int = 0  # sampling seed, combined with the class name and question so reruns repeat


class DescriptionParams(StrictModel):
    """Where the LLM description bank (stage `descriptions`) comes from."""

    backend: Literal["file", "openai", "transformers", "none"] = "file"  # none: no description bank
    file: DescriptionFileParams = DescriptionFileParams()  # backend: file
    recipe: LLMRecipeParams = LLMRecipeParams()  # backends openai and transformers
    openai: OpenAIParams = OpenAIParams()  # backend: openai
    transformers: TransformersParams = TransformersParams()  # backend: transformers

    @model_validator(mode="after")
    def _transformers_needs_a_model(self):
        if self.backend == "transformers" and not self.transformers.model:
            raise ValueError("backend 'transformers' needs transformers.model (a local model folder)")
        return self


class PromptBankParams(StrictModel):
    descriptions: DescriptionParams = DescriptionParams()  # the LLM description bank's source
    min_descriptions: int = Field(1, ge=1)  # fewer sentences for any class stops the descriptions stage
    # extra template ensembles {name: ["a photo of a {}.", ...]}, encoded like clip80/clip7, stored by name
    templates: dict[str, list[str]] = {}

    @field_validator("templates")
    @classmethod
    def _valid_templates(cls, templates: dict[str, list[str]]) -> dict[str, list[str]]:
        reserved = {"dataset", "clip80", "clip7"}  # the dataset template and the ensembles every bank has
        for name, items in templates.items():
            if name in reserved or not name.strip():
                raise ValueError(f"template set name {name!r} is taken or empty (reserved: {sorted(reserved)})")
            if not items:
                raise ValueError(f"template set {name!r} is empty")
            for t in items:
                _one_placeholder(t)
        return templates


class DomainShiftParams(StrictModel):
    """Train on the source with all its classes, test on the same classes in other domains."""

    source: DatasetId = "synthetic"
    targets: Annotated[list[DatasetId], Distinct] = ["synthetic_sketch", "synthetic_noise"]


class CrossDatasetParams(DomainShiftParams):
    """Train on the source with all its classes, test on other datasets with their own class lists."""

    targets: Annotated[list[DatasetId], Distinct] = ["synthetic_shapes"]


class FewShotParams(StrictModel):
    """Accuracy against the number of shots, all classes of each dataset. A K-shot draw is the seed's
    data.shots draw subsampled per class (nested: every K-shot set is inside the larger ones)."""

    datasets: Annotated[list[DatasetId], Distinct] = ["synthetic"]
    shots: list[int] = [1, 2, 4, 8, 16]
    # which of `methods` also run few-shot curves (others listed are left out); null: all of them
    methods: Annotated[list[str], Distinct] | None = None
    # Epochs per shot count for methods that train in epochs (CoOp's few-shot schedule: 1-2 shots 50, 4-8 100,
    # 16 200); null: each method's own epochs at every shot count.
    epochs: dict[int, int] | None = None

    @model_validator(mode="after")
    def _epochs_for_every_shot(self):
        if self.epochs is not None and sorted(self.epochs) != self.shots:
            raise ValueError(f"epochs must give one value per shot count {self.shots}, got keys {sorted(self.epochs)}")
        return self

    @field_validator("shots")
    @classmethod
    def _positive_sorted(cls, shots: list[int]) -> list[int]:
        if not shots or any(k < 1 for k in shots) or sorted(set(shots)) != shots:
            raise ValueError(f"must be increasing positive shot counts, got {shots}")
        return shots


PROTOCOLS = ("base2new", "domain_shift", "cross_dataset", "few_shot")


class EvalParams(StrictModel):
    # which protocols the run stages run (params.yaml runs all four; a minimal params file the two core ones)
    protocols: Annotated[list[Literal[PROTOCOLS]], Distinct] = ["base2new", "domain_shift"]
    domain_shift: DomainShiftParams = DomainShiftParams()  # (contract)
    cross_dataset: CrossDatasetParams = CrossDatasetParams()
    few_shot: FewShotParams = FewShotParams()


def _build_params_model() -> type[StrictModel]:
    """Params = the fixed sections above + one section per registered method (its own Config class). The method
    configs are imported without the methods themselves: validating params must not import torch."""
    from promptlab.methods import methods

    METHOD_CONFIGS = {name: spec.config for name, spec in methods().items()}
    method_sections: dict[str, Any] = {name: (cfg, cfg()) for name, cfg in METHOD_CONFIGS.items()}

    def _known_methods(cls, names: list[str]) -> list[str]:
        for n in names:
            if n not in METHOD_CONFIGS:
                raise ValueError(f"unknown method {n!r} (allowed: {', '.join(sorted(METHOD_CONFIGS))})")
        return names

    def _protocols_use_sharded_datasets(self):
        """Every dataset a protocol trains on is in data.datasets, every test-only target in data.eval_datasets
        (the shard/features/prompts stages run over those two lists), and nothing is in both."""
        data, ev = self.data, self.eval
        both = sorted(set(data.datasets) & set(data.eval_datasets))
        if both:
            raise ValueError(f"data.eval_datasets must not repeat data.datasets: {both}")
        sharded = set(data.datasets) | set(data.eval_datasets)
        for key, spec in (("domain_shift", ev.domain_shift), ("cross_dataset", ev.cross_dataset)):
            if key not in ev.protocols:
                continue
            if spec.source not in data.datasets:
                raise ValueError(f"eval.{key}.source {spec.source!r} must be one of data.datasets "
                                 f"{data.datasets} (its shards and features come from there)")
            if spec.source in spec.targets:
                raise ValueError(f"eval.{key}.targets must not repeat the source {spec.source!r}")
            allowed = set(data.eval_datasets) if key == "domain_shift" else sharded
            missing = [t for t in spec.targets if t not in allowed]
            if missing:
                raise ValueError(f"eval.{key}.targets {missing} must be listed in data.eval_datasets"
                                 + (" or data.datasets" if key == "cross_dataset" else "")
                                 + " (so their test split is sharded)")
        if "few_shot" in ev.protocols:
            fs = ev.few_shot
            unknown = [d for d in fs.datasets if d not in data.datasets]
            if unknown:
                raise ValueError(f"eval.few_shot.datasets {unknown} must be in data.datasets {data.datasets}")
            if fs.shots[-1] > data.shots:
                raise ValueError(f"eval.few_shot.shots {fs.shots} go above data.shots={data.shots}: the "
                                 "shards hold data.shots draws, so raise data.shots")
            unknown = [m for m in fs.methods or [] if m not in METHOD_CONFIGS]
            if unknown:
                raise ValueError(f"eval.few_shot.methods: unknown methods {unknown} (allowed: "
                                 f"{', '.join(sorted(METHOD_CONFIGS))})")
        return self

    return create_model(
        "Params",
        __base__=StrictModel,
        __validators__={
            "known_methods": field_validator("methods")(_known_methods),
            "protocols_use_sharded_datasets": model_validator(mode="after")(_protocols_use_sharded_datasets),
        },
        model=(ModelParams, ModelParams()),
        embedded=(EmbeddedParams, EmbeddedParams()),
        world=(WorldParams, WorldParams()),
        pretrain=(PretrainParams, PretrainParams()),
        data=(DataParams, DataParams()),
        features=(FeatureParams, FeatureParams()),
        prompts=(PromptBankParams, PromptBankParams()),
        methods=(Annotated[list[str], Distinct], ["zeroshot", "coop"]),
        eval=(EvalParams, EvalParams()),
        **method_sections,
    )


@functools.cache
def params_model() -> type[StrictModel]:
    return _build_params_model()


def _format_error(err: ValidationError, source: str) -> str:
    """One line per stage failure: `params.yaml: coop.n_ctx: Input should be ... (got 'x')`."""
    parts = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            parts.append(f"{key}: unknown key")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            got = "" if e["type"].startswith("value_error") else f" (got {e['input']!r})"
            parts.append(f"{key}: {msg}{got}")
    return f"{source}: " + "; ".join(parts)


def validate_params(raw: dict, source: str = "params.yaml"):
    """Validated params; their data.custom_datasets become lookups of promptlab.data.registry.DATASETS."""
    from promptlab.data.registry import use_custom

    try:
        params = params_model().model_validate(raw or {}, context={})
    except ValidationError as err:
        raise UserError(_format_error(err, source)) from None
    use_custom(custom_specs(params.data.custom_datasets))
    return params


def load_params(path: str | Path = "params.yaml"):
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    if raw is not None and not isinstance(raw, dict):
        raise UserError(f"{path}: top level must be a mapping of sections")
    params = validate_params(raw, str(path))
    check_checkpoint_path(params.model.pretrained, path.parent / "dvc.yaml", str(path))
    return params


def check_checkpoint_path(pretrained: str | None, dvc_yaml: Path, source: str = "params.yaml") -> None:
    """A model.pretrained file that is missing and that no stage of the pipeline (dvc.yaml beside the params
    file) writes stops every stage at once, before world/pretrain/shard spend minutes: the features stage would
    only find out at the end. A path inside a stage's output (the default, models/tiny_clip/..., is the pretrain
    stage's) may be missing until that stage runs; the stage loading it names it then."""
    if not pretrained or not looks_like_path(pretrained) or Path(pretrained).is_file():
        return
    if any(_inside(pretrained, out) for out in pipeline_outputs(dvc_yaml)):
        return
    raise UserError(f"{source}: model.pretrained: checkpoint not found: {pretrained} (no stage of {dvc_yaml.name} "
                    "writes it; give an existing file, an open_clip tag such as 'openai', or null)")


def pipeline_outputs(dvc_yaml: Path) -> list[str]:
    """Every `outs` path of dvc.yaml's stages (matrix placeholders `${...}` left in); [] without a dvc.yaml."""
    if not dvc_yaml.is_file():
        return []
    stages = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages") or {}
    outs = []
    for stage in stages.values():
        for out in (stage or {}).get("outs") or []:
            outs.extend(out if isinstance(out, dict) else [out])
    return [str(o) for o in outs]


def _inside(path: str, out: str) -> bool:
    """`path` is `out` or lies under it; a `${...}` placeholder in `out` matches any one path segment."""

    pattern = "/".join("[^/]+" if re.fullmatch(r".*\$\{[^}]*\}.*", part) else re.escape(part)
                       for part in Path(out).as_posix().split("/"))
    return re.match(rf"(\./)?{pattern}(/|$)", Path(path).as_posix()) is not None
