"""README's "Adding a method" lists every file a new method touches: this test builds a toy method from
exactly that list in a copy of the package and checks that params validation, the registry and the training
loop pick it up, with nothing else edited."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

TOY = {
    "promptlab/methods/<name>/__init__.py": '"""The toy method (a test fixture)."""\n',
    "promptlab/methods/<name>/config.py": '''
        from pydantic import Field

        from promptlab.methods.base_config import TrainConfig, register_method


        @register_method("toy", "promptlab.methods.toy.method:Toy")
        class ToyConfig(TrainConfig):
            scale: float = Field(1.0, gt=0)
        ''',
    "promptlab/methods/<name>/method.py": '''
        import torch
        import torch.nn.functional as F

        from promptlab.methods.base import PromptMethod


        class Toy(PromptMethod):
            """Class weights = the hand-crafted features plus a learned offset."""

            def __init__(self, cfg, clip, train_classes):
                super().__init__(cfg, clip, train_classes)
                self.offset = torch.nn.Parameter(torch.zeros(len(train_classes), clip.embed_dim))

            def text_features(self, classes):
                return F.normalize(classes.hand_features + self.cfg.scale * self.offset, dim=-1)
        ''',
}


def _readme_files() -> list[str]:
    section = (REPO / "README.md").read_text().split("## Adding a method", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\d+\. `([^`]+)`", section, flags=re.M)


def test_readme_lists_the_files_and_they_are_enough(tmp_path):
    listed = _readme_files()
    assert listed[:3] == list(TOY) and listed[3:] == ["params.yaml", "tests/methods/test_<name>.py", "docs/methods/"]
    shutil.copytree(REPO / "promptlab", tmp_path / "promptlab", ignore=shutil.ignore_patterns("__pycache__"))
    for path, text in TOY.items():
        target = tmp_path / path.replace("<name>", "toy")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text).lstrip())
    script = textwrap.dedent('''
        import sys
        from promptlab.config import validate_params
        from promptlab.methods import method_class
        p = validate_params({"methods": ["zeroshot", "toy"], "toy": {"scale": 2.0, "epochs": 2}})
        assert "torch" not in sys.modules  # validation imported only config files
        cls = method_class("toy")
        import torch
        assert cls.name == "toy" and type(p.toy) is cls.Config and p.toy.scale == 2.0
        from promptlab.clip.model import LoadedCLIP, build_untrained
        from promptlab.methods.base import FrozenCLIP
        from promptlab.prompts.bank import ClassSet
        from promptlab.train import TrainData, train
        import open_clip
        model = build_untrained("promptlab-tiny", 0).eval().requires_grad_(False)
        clip = FrozenCLIP(LoadedCLIP(model, None, open_clip.get_tokenizer("promptlab-tiny"), "promptlab-tiny"))
        hand = torch.nn.functional.normalize(torch.randn(3, clip.embed_dim), dim=-1)
        classes = ClassSet(["a", "b", "c"], "{}.", hand)
        method = cls(p.toy.model_copy(update={"warmup_epochs": 0, "lr": 1.0}), clip, classes)
        data = TrainData(hand.roll(1, 0)[:, None].repeat(4, 2, 1), torch.arange(3).repeat(4))
        history = train(method, data, classes, method.cfg, seed=0)
        assert history[-1]["loss"] < history[0]["loss"], history
        print("ok", cls.name)
    ''')
    env = {"PYTHONPATH": str(tmp_path), "PATH": str(Path(sys.executable).parent)}
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok toy", out.stderr[-3000:]
