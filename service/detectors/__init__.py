"""Detector kinds: one module per kind (or per family), the table that lists them, and the
front door that fits any kind by name and loads a fitted one for serving.

Nothing here imports FastAPI or Prometheus; serving needs numpy and scipy only (fitting uses
PyOD and scikit-learn). Start with :mod:`service.detectors.detector`.
"""
