"""``python -m service.jobs --train module:function``: a job runner in the foreground."""

from service.jobs.runner import main

raise SystemExit(main())
