"""Stage `shard@<dataset>`: a dataset's few-shot draws + test split -> WebDataset tars + manifest, validated."""

import argparse
import dataclasses
from pathlib import Path

from promptlab.cli import run
from promptlab.config import load_params
from promptlab.data.registry import dataset_spec
from promptlab.data.shards import read_skipped, write_shards
from promptlab.io import atomic_dir, read_json
from promptlab.validate import validate_manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", required=True, help="a datasets.yaml or data.custom_datasets id")
    ap.add_argument("--out", required=True)
    ap.add_argument("--report", required=True, help="validation report (JSON)")
    ap.add_argument("--test-only", action="store_true", help="shard the test split only (an evaluation target)")
    args = ap.parse_args()
    p = load_params()
    spec = dataset_spec(args.dataset)
    spec = dataclasses.replace(spec, test_only=spec.test_only or args.test_only)
    with atomic_dir(args.out) as tmp:
        manifest = write_shards(spec, p.data.root, tmp, shots=p.data.shots, seeds=p.data.seeds,
                                maxcount=p.data.shard_maxcount, bad_images=p.data.bad_images)
        n_classes = len(read_json(Path(tmp) / "classnames.json"))
        # few-shot needs every class in train as well as test (a skipped image can empty one)
        validate_manifest(manifest, n_classes, name=f"manifest:{args.dataset}", report=args.report,
                          classes_in=("test",) if spec.test_only else ("train", "test"),
                          skipped=read_skipped(tmp).to_dicts())
    print(f"shard {args.dataset}: {manifest.group_by('split').len().sort('split').rows()}")


if __name__ == "__main__":
    run(main)
