"""The baseline: what the seed did. scikit-learn ``predict`` (and ``score_samples`` with
``?score=true``) on every request, in a plain ``def`` endpoint that FastAPI runs in its thread
pool, with a pydantic ``list[float]`` body.

The estimator is a joblib file, as the seed loaded it: ``BENCH_ESTIMATOR=path.joblib``.

    BENCH_ESTIMATOR=estimator.joblib uvicorn --app-dir bench/servers baseline:app
"""

import os

import joblib
import numpy as np
from fastapi import FastAPI

model = joblib.load(os.environ["BENCH_ESTIMATOR"])
app = FastAPI(title="seed baseline")


@app.post("/prediction")
def prediction(features: list[float], score: bool = False) -> dict:
    X = np.array([features])
    label = int(model.predict(X)[0])
    result = {"prediction": label, "is_anomaly": label == -1}
    if score:
        result["anomaly_score"] = float(-model.score_samples(X)[0])
    return result
