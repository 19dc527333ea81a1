"""Dataset ids and where they live under data.root; the table itself is data (datasets.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml


@dataclass(frozen=True)
class DatasetSpec:
    id: str
    folder: str
    images: str
    split: str
    template: str
    test_only: bool = False

    def image_dir(self, root: str | Path) -> Path:
        return Path(root) / self.folder / self.images

    def split_file(self, root: str | Path) -> Path:
        return Path(root) / self.folder / self.split


def _load() -> dict[str, DatasetSpec]:
    table = yaml.safe_load((Path(__file__).with_name("datasets.yaml")).read_text())
    return {k: DatasetSpec(id=k, images=str(v.pop("images")), **v) for k, v in table.items()}


DATASETS: dict[str, DatasetSpec] = _load()
