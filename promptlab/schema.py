"""The base of every params section (a leaf module: config.py and every method's config.py build on it)."""

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Base of every params section: unknown keys are errors, values are not coerced silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)
