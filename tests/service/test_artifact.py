import json
import os
import pickle
import shutil

import pytest

from service import artifact
from service.artifact import ArtifactError


@pytest.fixture
def copy(tmp_path, model_path):
    dst = tmp_path / "model.joblib"
    shutil.copy(model_path, dst)
    shutil.copy(artifact.manifest_path(model_path), artifact.manifest_path(dst))
    return dst


class _Marker:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (str(self.path),))


def test_tampered_file_is_refused_before_unpickling(copy, tmp_path):
    marker = tmp_path / "code-ran"
    copy.write_bytes(pickle.dumps(_Marker(marker)))
    with pytest.raises(ArtifactError) as err:
        artifact.load(copy)
    assert "does not match its manifest" in str(err.value)
    assert str(copy) in str(err.value)
    assert not marker.exists()


def test_truncated_file_is_refused(copy):
    data = copy.read_bytes()
    copy.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="does not match its manifest"):
        artifact.load(copy)


def test_missing_manifest_is_refused(copy):
    artifact.manifest_path(copy).unlink()
    with pytest.raises(ArtifactError, match="manifest not found"):
        artifact.load(copy)


def test_other_sklearn_version_is_refused(copy):
    mpath = artifact.manifest_path(copy)
    manifest = json.loads(mpath.read_text())
    manifest["metadata"]["sklearn_version"] = "0.24.2"
    mpath.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"trained with scikit-learn 0\.24\.2"):
        artifact.load(copy)


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
