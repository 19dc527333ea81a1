"""Stage `descriptions@<dataset>`: the dataset's LLM description bank as text (sentences per class, in class
order, with the settings that made them), from the backend in prompts.descriptions. A DVC output, so an LLM's
answers are drawn once and versioned; the prompts stage encodes them."""

import argparse
from pathlib import Path

from promptlab.cli import run
from promptlab.config import load_params
from promptlab.data.registry import dataset_spec
from promptlab.io import read_json
from promptlab.prompts.descriptions import build_text_bank, write_text_bank


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", required=True, help="a datasets.yaml or data.custom_datasets id")
    ap.add_argument("--shards", required=True, help="the dataset's shards (for classnames.json)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    p = load_params()
    names = read_json(Path(args.shards) / "classnames.json")
    bank = build_text_bank(p.prompts.descriptions, p.prompts.min_descriptions, root=p.data.root,
                           folder=dataset_spec(args.dataset).folder, dataset=args.dataset, names=names)
    write_text_bank(args.out, bank)
    if bank.sentences is None:
        print(f"descriptions {args.dataset}: no description bank ({bank.source}); cupl and aape will refuse it")
        return
    unmatched = bank.source.get("unmatched_keys", [])
    print(f"descriptions {args.dataset}: {sum(map(len, bank.sentences))} sentences for {len(names)} classes "
          f"({bank.source['backend']})" + (f"; {len(unmatched)} file keys match no class: {unmatched[:5]}"
                                            if unmatched else ""))


if __name__ == "__main__":
    run(main)
