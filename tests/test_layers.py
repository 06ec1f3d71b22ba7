"""The fixed import chain: app -> models -> auth -> admin | api -> views -> main."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHAIN = ["app", "models", "auth", "admin", "api", "views", "main"]
RANK = {"app": 0, "models": 1, "auth": 2, "admin": 3, "api": 3, "views": 4, "main": 5}


def project_imports(module):
    """Yield (line, name) for every import of one of our modules in ``module``.py,
    at top level or nested inside functions and classes."""
    tree = ast.parse((ROOT / f"{module}.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] if node.level == 0 else ["<relative>"]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in RANK or top == "<relative>":
                yield node.lineno, top


@pytest.mark.parametrize("module", CHAIN)
def test_imports_only_earlier_modules(module):
    bad = [
        f"line {line}: {name}"
        for line, name in project_imports(module)
        if name == "<relative>" or (name != module and RANK[name] >= RANK[module])
    ]
    assert not bad, f"{module}.py imports what is not below it: {bad}"


@pytest.mark.parametrize("module", CHAIN)
def test_no_star_imports(module):
    tree = ast.parse((ROOT / f"{module}.py").read_text())
    stars = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names)
    ]
    assert not stars, f"{module}.py has `import *` at lines {stars}"


def test_nothing_imports_main():
    importers = [
        module
        for module in CHAIN
        if module != "main" and any(name == "main" for _, name in project_imports(module))
    ]
    assert importers == []


def test_the_checker_catches_a_nested_upward_import(tmp_path, monkeypatch):
    """The chain test is only worth something if it sees imports hidden in functions."""
    (tmp_path / "models.py").write_text("def f():\n    import views\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert list(project_imports("models")) == [(2, "views")]


@pytest.mark.slow  # a new Python process each
@pytest.mark.parametrize("module", CHAIN)
def test_each_module_imports_alone_in_a_fresh_interpreter(module, tmp_path):
    """``import module`` alone, in a new process, succeeds: it needs nothing set up by
    a later module."""
    env = dict(
        os.environ,
        SECRET_KEY="layers",
        DATABASE_URL=f"sqlite:///{tmp_path / 'layers.db'}",
        PYTHONPATH=str(ROOT),
    )
    result = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", f"import {module}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
