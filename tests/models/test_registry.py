"""The registry's layout, numbering, aliases and refusals, in one process."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pytest

from service.models import artifact
from service.models.registry import (
    ConflictError,
    InvalidNameError,
    NotFoundError,
    Registry,
    RegistryError,
    combine,
    select_versions,
    single_artifact,
)
from tests.models.conftest import assert_complete


def test_versions_are_numbered_per_model_each_in_its_own_folder(registry, save, trained):
    for _ in range(3):
        registry.register("alpha", save)
    registry.register("beta", save)

    root = registry.root
    assert sorted(os.listdir(root / "alpha")) == [".lock", "1", "2", "3", "aliases.json"]
    assert sorted(os.listdir(root / "alpha" / "2")) == ["model.joblib", "model.joblib.json"]
    snap = registry.snapshot()
    assert [m.name for m in snap] == ["alpha", "beta"]
    alpha = snap.model("alpha")
    assert alpha.numbers == (1, 2, 3)
    assert snap.model("beta").numbers == (1,)
    v2 = alpha.version(2)
    assert v2.path == root / "alpha" / "2" / "model.joblib"
    # the number is the registry's handle; the content hash stays the artifact's model_version
    assert v2.model_version == trained.version == alpha.version(3).model_version
    assert dict(v2.metadata) == trained.metadata
    assert v2.sha256 == artifact.file_sha256(v2.path)
    assert v2.kind == "iforest"
    assert_complete(snap)


def test_the_first_version_and_promoted_ones_take_the_default_alias(registry, save):
    assert registry.register("alpha", save).number == 1
    assert registry.model("alpha").default.number == 1
    registry.register("alpha", save)
    assert registry.model("alpha").default.number == 1, "a plain register must not promote"
    registry.register("alpha", save, promote=True)
    model = registry.model("alpha")
    assert model.default.number == 3
    assert dict(model.aliases) == {"default": 3}
    assert model.history["default"] == (1,)
    state = json.loads((registry.root / "alpha" / "aliases.json").read_text())
    assert state["aliases"] == {"default": 3}


def test_promote_and_rollback_walk_back_through_the_alias_history(registry, save):
    for _ in range(3):
        registry.register("alpha", save)
    assert registry.promote("alpha", 2).previous == 1
    assert registry.promote("alpha", "3").previous == 2
    registry.promote("alpha", 1, alias="champion")
    assert registry.model("alpha").alias("champion").number == 1

    change = registry.rollback("alpha")
    assert (change.previous, change.current) == (3, 2)
    assert registry.rollback("alpha").current == 1
    assert registry.model("alpha").default.number == 1
    with pytest.raises(ConflictError, match=r"model 'alpha': alias 'default' \(version 1\)"):
        registry.rollback("alpha")
    with pytest.raises(ConflictError, match="alias 'champion'"):
        registry.rollback("alpha", alias="champion")
    with pytest.raises(NotFoundError, match="no alias 'canary'; aliases: champion, default"):
        registry.rollback("alpha", alias="canary")
    # promoting to where it already points is not a step that rollback undoes
    assert registry.promote("alpha", 1).previous == 1
    assert registry.model("alpha").history.get("default", ()) == ()


def test_unknown_models_and_versions_are_named_with_what_exists(registry, save):
    registry.register("alpha", save)
    registry.register("alpha", save)
    registry.register("beta", save)
    with pytest.raises(NotFoundError, match=r"model 'alpha' has no version 9; versions: 1, 2$"):
        registry.promote("alpha", 9)
    with pytest.raises(NotFoundError, match=r"no model 'gamma'; models: alpha, beta$"):
        registry.promote("gamma", 1)
    with pytest.raises(NotFoundError, match=r"no model 'gamma'; models: alpha, beta$"):
        registry.model("gamma")
    with pytest.raises(NotFoundError, match="has no version 3"):
        registry.snapshot().model("alpha").version(3)
    with pytest.raises(InvalidNameError, match="invalid version 'two'"):
        registry.delete("alpha", "two")
    assert not (registry.root / "gamma").exists()


def test_error_listings_are_bounded(registry, save):
    for i in range(25):
        registry.register(f"m{i:02d}", save)
    with pytest.raises(NotFoundError) as exc:
        registry.model("zz")
    assert str(exc.value).endswith("m19 and 5 more")


def test_delete_refuses_aliased_versions_and_numbers_are_never_reused(registry, save):
    for _ in range(3):
        registry.register("alpha", save)
    registry.promote("alpha", 2, alias="champion")
    with pytest.raises(ConflictError, match=r"cannot delete model 'alpha' version 1: alias 'def"):
        registry.delete("alpha", 1)
    with pytest.raises(ConflictError, match="version 2: alias 'champion' points"):
        registry.delete("alpha", 2)

    registry.delete("alpha", 3)
    assert registry.model("alpha").numbers == (1, 2)
    assert not (registry.root / "alpha" / "3").exists()
    assert not [e for e in os.listdir(registry.root) if e.startswith(".")], "trash left behind"
    assert registry.register("alpha", save).number == 4, "a deleted number came back"
    with pytest.raises(NotFoundError, match="has no version 3; versions: 1, 2, 4"):
        registry.delete("alpha", 3)


def test_rollback_skips_versions_deleted_since(registry, save):
    for _ in range(3):
        registry.register("alpha", save)
    registry.promote("alpha", 2)
    registry.promote("alpha", 3)
    registry.delete("alpha", 2)
    change = registry.rollback("alpha")
    assert (change.previous, change.current) == (3, 1)


BAD_NAMES = ["..", ".", "../evil", "a/b", "/tmp/x", "", "Alpha", ".hidden", "-x", "a b", "a\x00b"]


@pytest.mark.parametrize("bad", [*BAD_NAMES, "x" * 65])
def test_names_that_could_leave_the_folder_are_refused(tmp_path, save, bad):
    registry = Registry(tmp_path / "registry")
    registry.register("alpha", save)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    with pytest.raises(InvalidNameError, match="invalid model name"):
        registry.register(bad, save)
    with pytest.raises(InvalidNameError, match="invalid model name"):
        registry.promote(bad, 1)
    with pytest.raises(InvalidNameError, match="invalid model name"):
        registry.delete(bad, 1)
    with pytest.raises(InvalidNameError, match="invalid model name"):
        registry.model(bad)
    with pytest.raises(InvalidNameError, match="invalid alias"):
        registry.promote("alpha", 1, alias=bad)
    with pytest.raises(InvalidNameError, match="invalid model name"):
        single_artifact(tmp_path / "m.joblib", bad)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_readers_ignore_what_is_not_a_model(registry, save, trained):
    root = registry.root
    registry.register("alpha", save)
    artifact.save(trained, root / "model.joblib")  # a one-file setup sharing the folder
    (root / "Upper" / "1").mkdir(parents=True)
    (root / ".staging-alpha-1-x").mkdir()
    (root / "empty").mkdir()  # a model folder with no version yet
    (root / "alpha" / "notes").mkdir()
    (root / "alpha" / "01").mkdir()
    assert [m.name for m in registry.snapshot()] == ["alpha"]
    assert registry.model("alpha").numbers == (1,)


def test_a_failing_writer_leaves_nothing_and_the_next_write_works(registry, save):
    def fails_midway(path: Path) -> None:
        save(path)
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        registry.register("alpha", fails_midway)
    assert len(registry.snapshot()) == 0
    assert not [e for e in os.listdir(registry.root) if e.startswith(".staging")]

    with pytest.raises(RegistryError, match=r"'alpha': the writer did not produce model\.joblib"):
        registry.register("alpha", lambda path: None)
    with pytest.raises(RegistryError, match=r"did not produce model\.joblib\.json"):
        registry.register("alpha", lambda path: path.write_bytes(b"x"))
    assert len(registry.snapshot()) == 0

    v = registry.register("alpha", save)
    assert (v.number, registry.model("alpha").default.number) == (1, 1)
    assert_complete(registry.snapshot())


def test_the_next_writer_removes_what_dead_writers_left_and_spares_live_ones(registry, save):
    root = registry.root
    registry.register("alpha", save)
    dead = root / ".staging-alpha-999-dead"
    (dead / "sub").mkdir(parents=True)
    (root / ".staging-alpha-999-dead.lock").touch()  # its flock died with its process
    live = root / ".staging-alpha-998-live"
    live.mkdir()
    lock_fd = os.open(root / ".staging-alpha-998-live.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock_fd, fcntl.LOCK_EX)  # a writer that is still writing
    trash = root / ".trash-alpha-7-x"
    trash.mkdir()
    (root / "alpha" / ".aliases.json.abc.tmp").write_text("{")  # an interrupted alias write
    try:
        assert registry.register("alpha", save).number == 2
        assert not dead.exists() and not trash.exists()
        assert not (root / ".staging-alpha-999-dead.lock").exists()
        assert live.exists(), "removed the folder of a writer that is still writing"
        assert not (root / "alpha" / ".aliases.json.abc.tmp").exists()
    finally:
        os.close(lock_fd)
    assert registry.model("alpha").numbers == (1, 2)


def test_select_versions_loads_aliased_all_or_latest(registry, save):
    for _ in range(5):
        registry.register("alpha", save)
    registry.register("beta", save)
    registry.promote("alpha", 3, alias="champion")
    snap = registry.snapshot()

    def picked(policy, latest=1):
        return sorted((v.model, v.number) for v in select_versions(snap, policy, latest))

    assert picked("aliased") == [("alpha", 1), ("alpha", 3), ("beta", 1)]
    assert picked("all") == [("alpha", n) for n in range(1, 6)] + [("beta", 1)]
    latest_two = [("alpha", 1), ("alpha", 3), ("alpha", 4), ("alpha", 5), ("beta", 1)]
    assert picked("latest", 2) == latest_two
    with pytest.raises(ValueError, match="unknown load policy 'some'"):
        select_versions(snap, "some")  # type: ignore[arg-type]


def test_a_single_artifact_is_a_one_model_registry(tmp_path, model_path, registry, save):
    snap = single_artifact(model_path, "default")
    model = snap.model("default")
    assert (model.numbers, dict(model.aliases)) == ((1,), {"default": 1})
    manifest = json.loads(Path(str(model_path) + ".json").read_text())
    assert (model.default.path, model.default.sha256) == (model_path, manifest["sha256"])
    assert dict(model.default.metadata) == manifest["metadata"]
    assert_complete(snap)

    missing = single_artifact(tmp_path / "nothing.joblib").model("default").default
    assert missing.error == "model file not found"

    registry.register("ecod", save)
    both = combine(snap, registry.snapshot())
    assert [m.name for m in both] == ["default", "ecod"]
    registry.register("default", save)
    with pytest.raises(ConflictError, match="model 'default' is defined twice"):
        combine(snap, registry.snapshot())


def test_a_snapshot_taken_across_a_promote_and_delete_stays_consistent(registry, save, monkeypatch):
    """Forces the narrow interleaving a reader can hit: between reading the aliases and listing
    the versions, another writer moves ``default`` off version 2 and deletes 2."""
    from service.models import registry as registry_module

    for _ in range(3):
        registry.register("alpha", save)
    registry.promote("alpha", 2)
    real_listing = registry_module._version_numbers
    interfered = []

    def listing_with_a_writer_in_between(model_dir):
        if not interfered:
            interfered.append(True)
            other = Registry(registry.root)  # another writer, unaware of this read
            other.promote("alpha", 3)
            other.delete("alpha", 2)
        return real_listing(model_dir)

    monkeypatch.setattr(registry_module, "_version_numbers", listing_with_a_writer_in_between)
    model = registry.snapshot().model("alpha")
    assert interfered
    assert model.numbers == (1, 3)
    assert dict(model.aliases) == {"default": 3}


def test_threads_of_one_process_get_distinct_numbers(registry, save):
    """flock locks per open file, so writer threads of one server exclude each other too."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        numbers = list(pool.map(lambda _: registry.register("alpha", save).number, range(16)))
    assert sorted(numbers) == list(range(1, 17))
    assert_complete(registry.snapshot())


def test_the_registry_and_its_cli_import_neither_fastapi_nor_prometheus():
    import subprocess
    import sys

    from tests.support import REPO

    code = (
        "import sys, service.models, service.cli.models, service.settings;"
        "web = ('fastapi', 'starlette', 'prometheus_client');"
        "print(sorted(m for m in web if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout) == (0, "[]\n"), done.stderr
