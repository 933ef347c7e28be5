"""The ceiling: a bare FastAPI endpoint that takes the same body as Vigil and returns a constant.

Written as a typical FastAPI app would be: a ``list[float]`` body parameter validated by
pydantic, a dict returned and serialized by FastAPI. No model, no metrics, no middleware.

    uvicorn --app-dir bench/servers noop:app
"""

from fastapi import FastAPI

app = FastAPI(title="no-op ceiling")


@app.post("/prediction")
async def prediction(features: list[float]) -> dict:
    return {"prediction": 1, "is_anomaly": False}
