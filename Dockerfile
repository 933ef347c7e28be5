# The Vigil service. The model is not baked in: mount a folder holding model.joblib and
# model.joblib.json at /app/models (read-only), e.g. `make docker_run`.
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt \
    && useradd --system --uid 10001 --no-create-home --home-dir /app vigil

COPY service/ service/

USER vigil
ENV VIGIL_HOST=0.0.0.0 \
    VIGIL_PORT=8000 \
    VIGIL_MODEL_PATH=/app/models/model.joblib
EXPOSE 8000

HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"VIGIL_PORT\"]}/health/ready', timeout=2)"

CMD ["python", "-m", "service", "serve"]
