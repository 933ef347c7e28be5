"""A key repeated in any object of a protocol document is refused, as in Vigil's own JSON; the
cheap count of nested objects' keys never lets one through, nor breaks on deep nesting."""

from __future__ import annotations

import numpy as np
import pytest

from service.core.features import FeatureParser
from service.protocols import kserve_v1, v2

NAMES = ("mean", "sd")
TENSOR = '"name":"x","shape":[1,2],"datatype":"FP64","data":[0.1,0.2]'


def parse(body: str) -> v2.InferRequest:
    return v2.parse_infer_request(body.encode(), None, NAMES, 10)


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ('{"inputs":[{' + TENSOR + ',"shape":[1,2]}]}', "shape"),
        ('{"inputs":[{' + TENSOR + '}],"outputs":[{"name":"prediction","name":"x"}]}', "name"),
        ('{"inputs":[{' + TENSOR + ',"parameters":{"a":1,"a":2}}]}', "a"),
        ('{"id":"1","inputs":[{' + TENSOR + '}],"id":"2"}', "id"),
    ],
    ids=["tensor", "output", "tensor-parameters", "top-level"],
)
def test_a_repeated_key_anywhere_is_refused(body, key):
    with pytest.raises(v2.V2Error) as caught:
        parse(body)
    assert caught.value.status == 400
    assert caught.value.message == f'duplicate key "{key}" in an object: give each feature once'


def test_colons_in_strings_and_deep_parameters_still_parse():
    request = parse('{"id":"a:b","inputs":[{' + TENSOR + '}],"parameters":{"k":"x:y"}}')
    assert (request.id, request.parameters) == ("a:b", {"k": "x:y"})
    deep = '{"a":' * 900 + "1" + "}" * 900  # deeper than Python recurses by default
    request = parse('{"inputs":[{' + TENSOR + '}],"parameters":' + deep + "}")
    assert request.features.tolist() == [[0.1, 0.2]]


def test_kserve_instances_as_objects_refuse_a_repeated_feature():
    parser = FeatureParser(NAMES)
    X = kserve_v1.parse_predict_request(
        b'{"instances":[{"mean":1,"sd":2},{"sd":4,"mean":3}]}', parser, 10
    )
    assert np.array_equal(X, [[1, 2], [3, 4]])
    with pytest.raises(kserve_v1.V1Error) as caught:
        kserve_v1.parse_predict_request(b'{"instances":[{"mean":1,"mean":2}]}', parser, 10)
    assert caught.value.message == 'duplicate key "mean" in an object: give each feature once'
