"""Run as a separate process (``python -m tests.jobs.claimer DB GO``): print "ready" once
the store is open, and once the file GO exists, claim jobs until none are left; print their
ids."""

import sys
import time
from pathlib import Path

from service.jobs.store import JobStore, new_id

store = JobStore(sys.argv[1])
go = Path(sys.argv[2])
print("ready", flush=True)
deadline = time.monotonic() + 60
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.01)
runner = new_id()
claimed = []
while (job := store.claim(runner, limit=10_000)) is not None:
    claimed.append(job.id)
print("\n".join(claimed))
