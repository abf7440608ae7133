"""The shape issue 31 asks of ``rxmrl/training/``: short functions with few parameters, a short MRL trainer.

Measured with ``ast`` (a function's lines run from its ``def`` -- decorators excluded -- to its last line,
docstring included; parameters count ``self`` / ``cls`` out and ``*args`` / ``**kwargs`` in).
``python tests/test_training_shape.py`` prints the MRL files' line counts and the longest functions.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

TRAINING = Path(__file__).resolve().parents[1] / "rxmrl" / "training"
MAX_FUNCTION_LINES = 60
MAX_PARAMETERS = 10
MAX_TRAINER_LINES = 350


def functions(root: Path = TRAINING) -> list[tuple[str, int, int]]:
    """``(file:qualified name, lines, parameters)`` of every function and method under ``root``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        found += _walk(tree, f"{path.relative_to(root.parent.parent)}:", "")
    return found


def _walk(node: ast.AST, where: str, prefix: str) -> list[tuple[str, int, int]]:
    found = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found.append((f"{where}{prefix}{child.name}", child.end_lineno - child.lineno + 1, _parameters(child)))
            found += _walk(child, where, f"{prefix}{child.name}.")
        elif isinstance(child, ast.ClassDef):
            found += _walk(child, where, f"{prefix}{child.name}.")
    return found


def _parameters(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    args = function.args
    named = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    return len([n for n in named if n not in ("self", "cls")]) + (args.vararg is not None) + (args.kwarg is not None)


def test_no_training_function_is_over_60_lines():
    assert not [(name, lines) for name, lines, _ in functions() if lines > MAX_FUNCTION_LINES]


def test_no_training_function_takes_over_10_parameters():
    assert not [(name, count) for name, _, count in functions() if count > MAX_PARAMETERS]


def test_the_mrl_trainer_stays_within_350_lines():
    lines = len((TRAINING / "mrl" / "trainer.py").read_text().splitlines())
    assert lines <= MAX_TRAINER_LINES, lines


def test_the_measure_sees_a_long_function_and_its_parameters(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(70))
    (tmp_path / "m.py").write_text(f"class C:\n  def f(self, a, b, *c, d, **e):\n{body}\n")
    (name, lines, count), = functions(tmp_path)
    assert name.endswith(":C.f") and lines == 71 and count == 5


if __name__ == "__main__":
    for path in sorted((TRAINING / "mrl").glob("*.py")):
        print(f"{len(path.read_text().splitlines()):5d}  {path.relative_to(TRAINING.parent.parent)}")
    print()
    for name, lines, count in sorted(functions(), key=lambda f: -f[1])[:int(sys.argv[1]) if len(sys.argv) > 1 else 12]:
        print(f"{lines:4d} lines {count:3d} params  {name}")
    print("over 10 parameters:", [(n, c) for n, _, c in functions() if c > MAX_PARAMETERS])
