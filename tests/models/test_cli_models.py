"""``python -m service.cli.models``: output and exit codes as a user sees them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from service.models.registry import Registry
from tests.support import REPO


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "service.cli.models", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def root(tmp_path, save, trained):
    registry = Registry(tmp_path / "registry")
    for _ in range(3):
        registry.register("alpha", save)
    registry.register("beta", save)
    registry.promote("alpha", 3, alias="champion")
    return registry.root


def run_ok(root, *args: str) -> str:
    done = cli("--registry", str(root), *args)
    assert (done.returncode, done.stderr) == (0, ""), done
    return done.stdout


def run_refused(root, *args: str) -> str:
    done = cli("--registry", str(root), *args)
    assert (done.returncode, done.stdout) == (2, ""), done
    return done.stderr


def test_list_shows_each_model_with_its_default_versions_and_aliases(root):
    lines = run_ok(root, "list").splitlines()
    assert [line.split() for line in lines] == [
        ["NAME", "KIND", "DEFAULT", "VERSIONS", "ALIASES"],
        ["alpha", "iforest", "1", "1-3", "champion=3"],
        ["beta", "iforest", "1", "1", "-"],
    ]
    data = json.loads(run_ok(root, "list", "--json"))
    assert data["models"][0] == {
        "name": "alpha",
        "kind": "iforest",
        "default_version": 1,
        "aliases": {"champion": 3, "default": 1},
        "versions": [1, 2, 3],
    }


def test_list_reads_the_registry_from_VIGIL_REGISTRY(root, tmp_path):
    done = cli("list", env={"VIGIL_REGISTRY": str(root)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].split()[0] == "alpha"
    empty = cli("list", env={"VIGIL_REGISTRY": str(tmp_path / "none")})
    assert (empty.returncode, empty.stdout) == (0, f"no models in {tmp_path / 'none'}\n")


def test_show_lists_versions_hashes_and_alias_history(root, trained):
    run_ok(root, "promote", "alpha", "2")
    out = run_ok(root, "show", "alpha").splitlines()
    assert out[:3] == ["model alpha", "  champion -> 3", "  default -> 2 (before: 1)"]
    rows = [line.split() for line in out[3:]]
    assert rows[0][:3] == ["VERSION", "MODEL_VERSION", "KIND"]
    assert [r[:3] for r in rows[1:]] == [[str(n), trained.version, "iforest"] for n in (1, 2, 3)]
    assert [r[-1] for r in rows[1:]] == ["-", "default", "champion"]
    data = json.loads(run_ok(root, "show", "alpha", "--json"))
    assert data["history"] == {"default": [1]}
    assert data["versions"][1]["path"] == str(root / "alpha" / "2" / "model.joblib")
    assert data["versions"][1]["metadata"] == trained.metadata


def test_promote_then_rollback_moves_default_and_back(root):
    assert run_ok(root, "promote", "alpha", "2") == "alpha: default -> version 2 (was version 1)\n"
    assert run_ok(root, "promote", "alpha", "2") == "alpha: default already points to version 2\n"
    assert run_ok(root, "promote", "beta", "1", "--alias", "canary") == (
        "beta: canary -> version 1 (was nothing)\n"
    )
    assert Registry(root).model("alpha").default.number == 2
    assert run_ok(root, "rollback", "alpha") == (
        "alpha: default -> version 1 (rolled back from version 2)\n"
    )
    assert Registry(root).model("alpha").default.number == 1
    assert run_refused(root, "rollback", "alpha") == (
        "error: model 'alpha': alias 'default' (version 1) has no earlier version to roll back to\n"
    )


def test_delete_removes_an_unaliased_version_and_refuses_an_aliased_one(root):
    assert run_refused(root, "delete", "alpha", "3") == (
        "error: cannot delete model 'alpha' version 3: alias 'champion' points to it;"
        " promote another version first\n"
    )
    assert run_ok(root, "delete", "alpha", "2") == "alpha: deleted version 2\n"
    assert Registry(root).model("alpha").numbers == (1, 3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "gamma"], "error: no model 'gamma'; models: alpha, beta"),
        (["promote", "gamma", "1"], "error: no model 'gamma'; models: alpha, beta"),
        (["promote", "alpha", "9"], "error: model 'alpha' has no version 9; versions: 1, 2, 3"),
        (["delete", "beta", "4"], "error: model 'beta' has no version 4; versions: 1"),
        (["rollback", "alpha", "--alias", "canary"], "error: model 'alpha' has no alias 'canary'"),
        (["promote", "alpha", "two"], "error: invalid version 'two': use a whole number from 1"),
        (["show", "../alpha"], "error: invalid model name '../alpha': use 1-64 characters"),
        (["promote", "alpha", "1", "--alias", "a/b"], "error: invalid alias 'a/b'"),
    ],
)
def test_refusals_exit_2_naming_the_model_version_or_alias(root, args, message):
    before = Registry(root).snapshot()
    assert run_refused(root, *args).startswith(message)
    assert Registry(root).snapshot() == before, "a refusal changed the registry"


def test_invalid_settings_exit_2_naming_the_setting(root):
    done = cli("list", env={"VIGIL_REGISTRY": str(root), "VIGIL_REGISTRY_LOAD": "some"})
    assert done.returncode == 2
    assert done.stderr.startswith("error: invalid settings:")
    assert "registry_load" in done.stderr


def test_a_usage_error_exits_2(root):
    done = cli("--registry", str(root), "promote", "alpha")
    assert done.returncode == 2
    assert "the following arguments are required: version" in done.stderr


def test_the_commands_plug_into_another_parser_as_a_subcommand(root, capsys):
    """How ``python -m service models ...`` will wire them: same arguments, same handlers."""
    import argparse

    from service.cli import models as cli_models

    parser = argparse.ArgumentParser(prog="python -m service")
    cli_models.add_arguments(parser.add_subparsers(dest="command").add_parser("models"))
    args = parser.parse_args(["models", "--registry", str(root), "promote", "alpha", "2"])
    assert cli_models.run(args) == 0
    assert capsys.readouterr().out == "alpha: default -> version 2 (was version 1)\n"
    args = parser.parse_args(["models", "--registry", str(root), "delete", "alpha", "2"])
    assert cli_models.run(args) == 2
    assert "alias 'default' points to it" in capsys.readouterr().err
