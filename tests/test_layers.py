"""The layers of the house hold: import-linter's contracts in ``pyproject.toml`` pass, with no ignored imports.

``envs/`` and ``rewards/`` install as ``rxmrl.envs`` and ``rxmrl.rewards`` (``[tool.setuptools.package-dir]``),
which import-linter cannot see from the source tree, so each test lays the package out as installed in a
temporary folder and lints that copy in a fresh interpreter.
"""

import shutil
import subprocess
import sys
from pathlib import Path

from rxmrl.config import tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"


def _installed_layout(destination: Path) -> Path:
    """``destination/rxmrl`` with every mapped sub-package in its installed place; returns ``destination``."""
    package_dirs = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["setuptools"]["package-dir"]
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / package_dirs["rxmrl"], destination / "rxmrl", ignore=ignore)
    for package, folder in package_dirs.items():
        if package != "rxmrl":
            shutil.copytree(ROOT / folder, destination / package.replace(".", "/"), ignore=ignore)
    return destination


def _lint(layout: Path) -> subprocess.CompletedProcess:
    code = ("import sys; from importlinter.cli import lint_imports; "
            f"sys.exit(lint_imports(config_filename={str(PYPROJECT)!r}, no_cache=True))")
    return subprocess.run([sys.executable, "-c", code], cwd=layout, env={"PYTHONPATH": str(layout)},
                          capture_output=True, text=True, timeout=120)


def test_the_import_contracts_hold(tmp_path):
    result = _lint(_installed_layout(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_the_contracts_ignore_no_import():
    contracts = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["importlinter"]["contracts"]
    assert {c["type"] for c in contracts} == {"layers", "acyclic_siblings"}
    assert not [c["name"] for c in contracts if c.get("ignore_imports")]


def test_an_upward_import_and_a_cycle_break_the_contracts(tmp_path):
    layout = _installed_layout(tmp_path)
    tokenizer = layout / "rxmrl" / "tokenizer.py"
    tokenizer.write_text(tokenizer.read_text(encoding="utf-8") + "\nimport rxmrl.data.storygen  # noqa\n",
                         encoding="utf-8")
    report = layout / "rxmrl" / "pipeline" / "layout.py"
    report.write_text(report.read_text(encoding="utf-8") + "\nimport rxmrl.pipeline.run  # noqa\n",
                      encoding="utf-8")
    result = _lint(layout)
    assert result.returncode != 0
    assert "rxmrl.tokenizer is not allowed to import rxmrl.data" in result.stdout
    assert "No cycles are allowed in rxmrl.pipeline" in result.stdout
