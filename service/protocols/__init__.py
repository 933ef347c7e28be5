"""Codecs of the inference protocols Vigil speaks beside its own JSON: the Open Inference
Protocol V2 (:mod:`service.protocols.v2`) and KServe V1 (:mod:`service.protocols.kserve_v1`).

Transport-light: bytes and plain values in, numpy matrices, documents and bytes out. No
FastAPI or Starlette here; the routes map :class:`ProtocolError` to ``{"error": ...}``.
"""

from service.protocols.common import ProtocolError, error_body

__all__ = ["ProtocolError", "error_body"]
