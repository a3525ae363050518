"""The code base's layout rules: what two packages share is public, imports run one way, and no engine function
grows past what a reader takes in at once without saying why."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hwnas", "profilers", "search_spaces")
# lower layers never import higher ones: search_spaces <- profilers <- hwnas
LAYER = {"search_spaces": 0, "profilers": 1, "hwnas": 2}


def _sources(folders):
    for folder in folders:
        yield from sorted((ROOT / folder).rglob("*.py"))


def _package_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1]) if parts[-1] != "__init__" else ".".join(parts[:-1])


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []


def private_imports(folders) -> list[str]:
    """Every import of another package's private module or private name, as 'file:line: what'."""
    found = []
    for path in _sources(folders):
        here = _package_of(path)
        for line, module, names in _imports(path):
            if module.split(".")[0] not in PACKAGES:
                continue
            parts = module.split(".")
            private = next((i for i, p in enumerate(parts) if p.startswith("_") and not p.startswith("__")), None)
            if private is not None:
                owner = ".".join(parts[:private])
                if not (here == owner or here.startswith(owner + ".")):
                    found.append(f"{path.relative_to(ROOT)}:{line}: {module}")
            owner = ".".join(parts[:-1]) or parts[0]
            for name in names:
                if name.startswith("_") and not (here == owner or here.startswith(owner + ".")):
                    found.append(f"{path.relative_to(ROOT)}:{line}: {module}.{name}")
    return found


def test_no_package_imports_another_packages_private_modules_or_names():
    assert private_imports(PACKAGES + ("benchmarks",)) == []


def test_the_check_finds_a_private_import(tmp_path, monkeypatch):
    # the rule can fail: a module of hwnas importing a private module of profilers is reported
    fake = tmp_path / "hwnas"
    fake.mkdir()
    (fake / "bad.py").write_text("from profilers._hidden import thing\nfrom profilers.table import _secret\n")
    (fake / "good.py").write_text("from hwnas._own import thing\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    assert private_imports(("hwnas",)) == ["hwnas/bad.py:1: profilers._hidden", "hwnas/bad.py:2: profilers.table._secret"]


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_run_one_way(package):
    wrong = []
    for path in _sources((package,)):
        for line, module, _ in _imports(path):
            top = module.split(".")[0]
            if top in LAYER and LAYER[top] > LAYER[package]:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {module}")
    assert wrong == []


MAX_LINES, MAX_PARAMETERS = 60, 8


def test_engine_functions_are_short_or_say_why():
    """No function of the engine (hwnas/, profilers/, search_spaces/) is over about 60 lines or 8 parameters unless its
    docstring gives the reason ('long because ...', 'many parameters because ...')."""
    found = []
    for path in _sources(PACKAGES):
        if "cli" in path.relative_to(ROOT).parts:
            continue  # argument parsers and report renderers: long by their nature, no logic to hide
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            doc = " ".join((ast.get_docstring(node) or "").lower().split())
            args = node.args
            count = len(args.posonlyargs + args.args + args.kwonlyargs) - (args.args[:1] != [] and args.args[0].arg in
                                                                            ("self", "cls"))
            lines = node.end_lineno - node.lineno + 1
            if lines > MAX_LINES and "long because" not in doc:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {lines} lines")
            if count > MAX_PARAMETERS and "many parameters because" not in doc:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {count} parameters")
    assert found == [], "\n".join(found)
