"""Request bodies built, and response bodies read, by the real tritonclient.http client."""

from __future__ import annotations

import numpy as np
import tritonclient.http as triton

DTYPES = {"FP32": np.float32, "FP64": np.float64}


def request_body(
    X: np.ndarray,
    *,
    binary: bool,
    outputs: list[triton.InferRequestedOutput] | None = None,
    request_id: str = "",
    name: str = "input-0",
) -> tuple[bytes, int | None]:
    """What ``InferenceServerClient.infer`` would POST for ``X``: the body and the
    ``Inference-Header-Content-Length`` header (None for a JSON-only body)."""
    datatype = {np.dtype(np.float32): "FP32", np.dtype(np.float64): "FP64"}[X.dtype]
    tensor = triton.InferInput(name, list(X.shape), datatype)
    tensor.set_data_from_numpy(X, binary_data=binary)
    return triton.InferenceServerClient.generate_request_body(
        [tensor], outputs=outputs, request_id=request_id
    )


def read_response(body: bytes, header_length: int | None) -> triton.InferResult:
    return triton.InferenceServerClient.parse_response_body(body, header_length=header_length)
