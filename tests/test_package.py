"""The package installs with the layout the users asked for and its command answers."""

import subprocess
import sys

import rxmrl
from rxmrl import special_tokens
from rxmrl.cli import build_parser


def test_envs_and_rewards_install_inside_the_rxmrl_namespace():
    import rxmrl.envs
    import rxmrl.rewards

    assert rxmrl.envs.__name__ == "rxmrl.envs"
    assert rxmrl.envs.__file__.replace("\\", "/").endswith("envs/__init__.py")
    assert rxmrl.rewards.__file__.replace("\\", "/").endswith("rewards/__init__.py")


def test_special_token_ids_follow_their_order():
    for token_id, token in enumerate(special_tokens.SPECIAL_TOKENS):
        assert getattr(special_tokens, {"[Q]": "QUERY", "[A]": "ANSWER", "[T]": "THINK"}.get(
            token, token.strip("[]")) + "_ID") == token_id
    assert special_tokens.SPECIAL_TOKEN_IDS == set(range(7))


def test_cli_help_lists_every_registered_command():
    parser = build_parser()
    help_text = parser.format_help()
    choices = parser._subparsers._group_actions[0].choices if parser._subparsers else {}
    for name in choices:
        assert name in help_text
    result = subprocess.run([sys.executable, "-m", "rxmrl", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "rxmrl" in result.stdout
    assert rxmrl.__version__


def test_every_source_package_is_listed_for_installation():
    """An editable install finds any subpackage, a wheel only the listed ones: keep the list complete."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    roots = {name: root / folder for name, folder in config["package-dir"].items()}
    found = set()
    for name, folder in roots.items():
        for init in folder.rglob("__init__.py"):
            relative = init.parent.relative_to(folder).parts
            found.add(".".join((name, *relative)))
    assert found == listed
