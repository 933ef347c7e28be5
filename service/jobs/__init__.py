"""Training jobs through the API: the job store, the runner process pool, webhook delivery.

- ``store``: jobs, their uploads and webhook deliveries in one SQLite file;
- ``runner``: claims queued jobs and trains each in its own low-priority process;
- ``webhooks``: Standard Webhooks delivery with retries, and the anomaly batcher.

Nothing here imports FastAPI or Prometheus: metrics are callbacks the caller wires.
"""
