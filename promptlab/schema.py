"""The base of every params section (a leaf module: config.py and every method's config.py build on it)."""

from pydantic import AfterValidator, BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Base of every params section: unknown keys are errors, and so are inf and nan in a float key (.inf in
    YAML). Numbers written as text are read as numbers: DVC's `-S coop.lr=1e-5` writes 1e-05, which YAML 1.1
    reads as a string."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _distinct(values: list) -> list:
    repeated = list(dict.fromkeys(v for v in values if values.count(v) > 1))
    if repeated:
        raise ValueError(f"{', '.join(map(str, repeated))} listed twice")
    return values


# A list param whose items must differ: a repeated seed, method or dataset would run, shard or score twice
# under one name (two stages or run folders that collide).
Distinct = AfterValidator(_distinct)
