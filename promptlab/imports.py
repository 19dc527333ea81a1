"""The promptlab files a stage's code loads, transitively: what stage `code` records for each stage (dvc.yaml,
docs/pipeline.md "Code dependencies"). Static: every `import` / `from ... import` statement anywhere in a file
(function-local ones included), following promptlab.* only. A package's __init__.py counts when it holds code
(importing a submodule runs it). A module's data files are the files beside it that its code names
(`Path(__file__).with_name("datasets.yaml")`); a named folder counts with every file in it. Imports made by
name at run time (the method registry loading promptlab.methods.<name>) are not seen: the run stage's record
adds the method's folder itself."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

PACKAGE = "promptlab"
ROOT = Path(__file__).resolve().parents[1]  # the folder holding promptlab/


def module_file(module: str, root: Path = ROOT) -> Path | None:
    """promptlab.a.b -> root/promptlab/a/b.py or root/promptlab/a/b/__init__.py; None if neither exists."""
    base = root.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    """The module an ImportFrom names (relative imports resolved against the importing module)."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """promptlab modules imported by one file: `import a.b`, `from a import b` (b a submodule, or a name of
    a), relative imports; in any scope."""
    importer, is_package = _module_name(path, root), path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, importer, is_package)
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}  # kept only if it is a module
    return {m for m in found if (m == PACKAGE or m.startswith(PACKAGE + ".")) and module_file(m, root)}


def _with_packages(module: str) -> list[str]:
    """a.b.c -> [a, a.b, a.b.c]: importing a module runs each enclosing package's __init__ first."""
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def closure(files: list[Path], root: Path = ROOT) -> set[Path]:
    """Every promptlab file that importing/running `files` loads (the files themselves included, and each
    package __init__.py on the way that is not empty)."""
    seen: set[Path] = set()
    todo = [Path(f).resolve() for f in files]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in imported_modules(path, root):
            for name in _with_packages(module):
                file = module_file(name, root)
                if file is not None and file not in seen and (file.name != "__init__.py" or file.read_bytes().strip()):
                    todo.append(file)
    return seen


def data_files(path: Path) -> set[Path]:
    """The non-Python files beside module `path` that its code names: a string constant equal to the name of a
    sibling file, or of a sibling folder that is not a package (then every file in it, bytecode aside)."""
    names = {node.value for node in ast.walk(ast.parse(path.read_text(), str(path)))
             if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    found: set[Path] = set()
    for sibling in path.parent.iterdir():  # only real siblings: a docstring or message names none
        if sibling.name not in names or sibling.suffix == ".py":
            continue
        if sibling.is_file():
            found.add(sibling)
        elif not (sibling / "__init__.py").exists():
            found |= {f for f in sibling.rglob("*") if f.is_file() and "__pycache__" not in f.parts}
    return found


def code_record(files: list[Path], root: Path = ROOT) -> dict[str, str]:
    """{path relative to root: sha256} of every promptlab file running `files` loads (closure) and the data
    files those modules name; `files` themselves (stage scripts) are left out: each stage lists its script."""
    loaded = closure(files, root)
    package = (root / PACKAGE).resolve()
    modules = {f for f in loaded if f.is_relative_to(package)}
    everything = modules | {d.resolve() for f in modules for d in data_files(f)}
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(everything)}


def run_code_record(method_folder: Path, root: Path = ROOT) -> dict[str, str]:
    """The run stage's record for one method: stages/run.py's files plus the method folder's (its own files,
    what they import, their data files); the folder is loaded by name, so the walk starts from it too."""
    return code_record([root / "stages" / "run.py", *sorted(method_folder.resolve().rglob("*.py"))], root)
