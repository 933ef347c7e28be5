"""Several workers' stores sharing one verified copy, in one process (the live tests with real
workers are in test_workers.py)."""

import shutil

import numpy as np

from service.models import artifact
from service.models.served_copy import ServedCopy
from service.models.store import ModelStore
from service.settings import Settings
from service.training.trainer import TrainingParams, train


def settings_for(path) -> Settings:
    return Settings(model_path=path, registry=path.parent / "no-registry")


def make_model(path, seed: int) -> str:
    X = np.random.default_rng(seed).normal(0, 0.05, (300, 2))
    model = train(X, ["mean", "sd"], TrainingParams(n_estimators=10, random_state=seed))
    artifact.save(model, path)
    return model.version


def test_stores_serve_the_copy_and_move_only_on_a_reload(tmp_path):
    path = tmp_path / "models" / "model.joblib"
    first = make_model(path, seed=1)
    shared = ServedCopy(tmp_path / "run")
    published: list[str] = []
    settings = settings_for(path)
    a = ModelStore(settings, shared, on_publish=lambda: published.append("a"))
    b = ModelStore(settings, shared, on_publish=lambda: published.append("b"))
    a.load()
    assert published == ["a"]

    second = make_model(path, seed=2)  # on disk, not reloaded: a starting store ignores it
    b.load()
    assert (a.model.version, b.model.version) == (first, first)
    assert published == ["a"]

    artifact.manifest_path(path).write_text("{}")  # a broken reload leaves the copy alone
    assert a.reload().result == "refused"
    c = ModelStore(settings, shared)
    c.load()
    assert c.model.version == first

    make_model(path, seed=2)
    assert a.reload().result == "reloaded"
    assert published == ["a", "a"]
    b.adopt()
    c.adopt()
    assert {a.model.version, b.model.version, c.model.version} == {second}
    # /model_information names the registry's file (base name), not the private copy's folder.
    assert b.model.describe()["model_file"] == path.name
    assert str(tmp_path / "run") not in str(b.model.describe())
    # Only one folder is kept, and it holds the exact verified bytes and manifest.
    folders = [p for p in (tmp_path / "run").iterdir() if p.is_dir() and not p.is_symlink()]
    assert [p.name for p in folders] == [artifact.file_sha256(path)]
    assert (folders[0] / "model.joblib").read_bytes() == path.read_bytes()


def test_a_removed_run_folder_is_made_again(tmp_path):
    path = tmp_path / "models" / "model.joblib"
    first = make_model(path, seed=1)
    shared = ServedCopy(tmp_path / "run")
    settings = settings_for(path)
    ModelStore(settings, shared).load()
    shutil.rmtree(tmp_path / "run")  # e.g. a tmp cleaner
    store = ModelStore(settings, shared)
    store.load()
    assert store.model.version == first
    assert shared.current() is not None
