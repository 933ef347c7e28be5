"""Vigil: a monitored IsolationForest anomaly-detection service."""

__version__ = "0.1.0"
