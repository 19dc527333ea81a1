"""Stage `listing`: one small JSON per dataset of data.datasets and data.eval_datasets describing its folder
under data.root (and a description file kept outside it), see promptlab/data/listing.py. It runs on every
`dvc repro` (always_changed) and its files change only when a dataset's files do, so the shard and
description stages, which depend on them instead of on data.root, re-run exactly then."""

import argparse
from pathlib import Path

from promptlab.cli import run
from promptlab.config import load_params
from promptlab.data.listing import file_listing, folder_listing
from promptlab.data.registry import dataset_spec
from promptlab.io import atomic_dir, write_json
from promptlab.prompts.description_files import description_file_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, help="directory for <dataset>.json")
    args = ap.parse_args()
    p = load_params()
    descriptions = p.prompts.descriptions
    with atomic_dir(args.out) as out:
        for dataset in [*p.data.datasets, *p.data.eval_datasets]:
            spec = dataset_spec(dataset)
            folder = spec.dataset_dir(p.data.root)
            # the folder relative to data.root: the same data under another root gives the same listing
            listing = {"dataset": dataset, **folder_listing(folder), "folder": spec.folder}
            if spec.custom:  # its declaration: the stages depending on this file re-run when it changes
                listing["custom_dataset"] = p.data.custom_datasets[dataset].model_dump()
            if descriptions.backend == "file":
                path = description_file_path(descriptions.file, p.data.root, spec.folder, dataset)
                if not path.resolve().is_relative_to(folder.resolve()):
                    listing["descriptions_file"] = {**file_listing(path), "path": descriptions.file.path}
            write_json(Path(out) / f"{dataset}.json", listing)
            print(f"listing {dataset}: " + (f"{listing['files']} files, {listing['bytes'] / 2**20:.1f} MiB"
                                           if listing["exists"] else f"{folder} not found"))


if __name__ == "__main__":
    run(main)
