import json
import os
import shutil
import time

import numpy as np
import pytest

from service.models import artifact
from service.models.artifact import ArtifactError
from service.models.store import ModelStore
from service.settings import Settings
from service.training.trainer import TrainingParams, train
from tests.service.hostile import Swapper, evil_pickle, make_unreadable
from tests.support import write_format_1


def store_for(path) -> ModelStore:
    """A store serving the one artifact at ``path`` (no registry)."""
    return ModelStore(Settings(model_path=path, registry=path.parent / "no-registry"))


@pytest.fixture
def copy(tmp_path, model_path):
    dst = tmp_path / "models" / "model.joblib"
    dst.parent.mkdir()
    shutil.copy(model_path, dst)
    shutil.copy(artifact.manifest_path(model_path), artifact.manifest_path(dst))
    return dst


@pytest.fixture
def small(tmp_path):
    """A small model (fast to reload) in a folder of its own."""
    path = tmp_path / "models" / "model.joblib"
    X = np.random.default_rng(1).normal(0, 0.05, (500, 2))
    artifact.save(train(X, ["mean", "sd"], TrainingParams(n_estimators=20, random_state=1)), path)
    return path


def edit_manifest(path, **fields) -> None:
    mpath = artifact.manifest_path(path)
    manifest = json.loads(mpath.read_text())
    manifest.update(fields)
    mpath.write_text(json.dumps(manifest))


def test_tampered_file_is_refused_before_unpickling(copy, tmp_path):
    marker = tmp_path / "code-ran"
    copy.write_bytes(evil_pickle(marker, copy.stat().st_size))
    with pytest.raises(ArtifactError) as err:
        artifact.load(copy)
    assert "does not match its manifest: sha256 " in str(err.value)
    assert str(copy) in str(err.value)
    assert not marker.exists()


def test_a_file_swapped_after_its_hash_check_is_never_unpickled(small, tmp_path):
    """The race of issue #9: the file is replaced between the hash check and the unpickle.
    Reloads run while another thread swaps a good file and a code-running pickle of the same
    size in and out; the pickle's code must never run, and no answer names the folder."""
    store = store_for(small)
    store.load()
    assert store.model is not None
    marker = tmp_path / "code-ran"
    results: dict[str, int] = {}
    deadline = time.monotonic() + 3
    with Swapper(small, marker, tmp_path / "stage") as swapper:
        for _ in range(500):  # before the fix, the pickle ran within about 100 reloads
            outcome = store.reload()
            results[outcome.result] = results.get(outcome.result, 0) + 1
            assert str(small.parent) not in (outcome.reason or "")
            if marker.exists() or time.monotonic() > deadline:
                break
    assert not marker.exists(), f"the pickle ran after {results}"
    print(f"race: {results} while {swapper.swaps} swaps")
    assert swapper.swaps > 100
    assert results.get("refused", 0) > 0 and results.get("unchanged", 0) > 0, results
    assert store.model is not None and store.model.artifact.sha256 == artifact.file_sha256(small)


def test_a_file_of_another_size_is_refused_unread(copy):
    size = copy.stat().st_size
    with copy.open("ab") as fh:
        fh.write(b"x")
    with pytest.raises(ArtifactError) as err:
        artifact.load(copy)
    assert err.value.reason == (
        f"model file does not match its manifest: {size + 1} bytes, manifest says {size}"
    )


def test_a_wrong_size_bytes_in_the_manifest_is_refused(copy):
    size = copy.stat().st_size
    edit_manifest(copy, size_bytes=size - 1)
    with pytest.raises(ArtifactError, match=f"{size} bytes, manifest says {size - 1}"):
        artifact.load(copy)
    for bad in (None, "123", -1, 1.5, True):
        edit_manifest(copy, size_bytes=bad)
        with pytest.raises(ArtifactError, match="manifest has no size_bytes"):
            artifact.load(copy)


def test_a_manifest_for_another_file_is_refused(copy):
    # The right hash and size, but the manifest says it describes another file.
    edit_manifest(copy, artifact="other.joblib")
    with pytest.raises(ArtifactError) as err:
        artifact.load(copy)
    assert "the manifest is for 'other.joblib', not 'model.joblib'" in err.value.public
    edit_manifest(copy, artifact=str(copy.parent / "model.joblib"))  # a path is not the name
    with pytest.raises(ArtifactError) as err:
        artifact.load(copy)
    assert str(copy.parent) not in err.value.public
    edit_manifest(copy, artifact=None)
    with pytest.raises(ArtifactError, match="manifest has no artifact file name"):
        artifact.load(copy)


def test_truncated_file_is_refused(copy):
    data = copy.read_bytes()
    copy.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="does not match its manifest"):
        artifact.load(copy)


def test_missing_manifest_is_refused(copy):
    artifact.manifest_path(copy).unlink()
    with pytest.raises(ArtifactError, match="manifest not found"):
        artifact.load(copy)


def test_a_format_1_artifact_is_refused_with_re_train(copy, tmp_path):
    """An artifact written before detector kinds (a pickled IsolationForest) is never
    unpickled: the manifest's format refuses it, saying what to do."""
    write_format_1(copy)
    with pytest.raises(ArtifactError) as err:
        artifact.load(copy)
    assert "format 1" in err.value.public and "re-train" in err.value.public
    assert str(copy.parent) not in err.value.public


def test_manifest_metadata_must_match_the_file(copy):
    mpath = artifact.manifest_path(copy)
    manifest = json.loads(mpath.read_text())
    manifest["metadata"]["feature_names"] = ["a", "b", "c"]
    mpath.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="metadata differs from its manifest"):
        artifact.load(copy)


def test_public_reason_hides_the_directory(copy):
    copy.write_bytes(b"junk")
    with pytest.raises(ArtifactError) as err:
        artifact.load(copy)
    assert err.value.public.startswith("model.joblib: ")
    assert str(copy.parent) not in err.value.public


def test_an_unreadable_file_is_refused_without_its_path(copy):
    """An OSError names its file with the full path: it must not reach a client."""
    make_unreadable(copy)
    with pytest.raises(ArtifactError) as err:
        artifact.load(copy)
    assert err.value.public == "model.joblib: model file cannot be read (Permission denied)"
    assert str(copy) in str(err.value)  # the log still says which file
    store = store_for(copy)
    store.load()  # the service starts, not ready, with the reason
    assert store.model is None
    assert store.not_ready_reason == f"default@1: {err.value.public}"
    outcome = store.reload()
    assert (outcome.result, outcome.reason) == ("refused", store.not_ready_reason)


@pytest.mark.parametrize("what", ["model", "manifest"])
def test_a_folder_or_fifo_in_place_of_a_file_is_refused(copy, what):
    target = copy if what == "model" else artifact.manifest_path(copy)
    target.unlink()
    target.mkdir()
    with pytest.raises(ArtifactError, match="is not a regular file"):
        artifact.load(copy)
    target.rmdir()
    os.mkfifo(target)  # opening a FIFO for reading would wait for a writer forever
    with pytest.raises(ArtifactError, match="is not a regular file") as err:
        artifact.load(copy)
    assert str(copy.parent) not in err.value.public
