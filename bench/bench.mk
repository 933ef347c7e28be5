# Benchmarks. Included from the top Makefile, after its VENV, PY and DEV definitions.
# Need wrk on PATH (Debian: apt-get install wrk); results go to bench/results/ (git-ignored).

.PHONY: bench
bench: $(DEV) ## everything below: Vigil and every kind vs a no-op app, V2, training jobs, Dask (~15 min)
	$(PY) bench/bench.py
	$(PY) bench/bench_v2.py
	$(PY) bench/bench_jobs.py
	$(PY) bench/bench_dask.py --rows 1000000

.PHONY: bench_v2
bench_v2: $(DEV) ## V2 infer (JSON, one row) vs /prediction; 10,000-row binary tensors vs JSON batches
	$(PY) bench/bench_v2.py

.PHONY: bench_jobs
bench_jobs: $(DEV) ## single-row p50/p99 with and without a training job running
	$(PY) bench/bench_jobs.py

.PHONY: bench_dask
bench_dask: $(DEV) ## rows/s scoring a file of millions of rows: one process vs a local Dask cluster
	$(PY) bench/bench_dask.py

.PHONY: bench_quick
bench_quick: $(DEV) ## the same benchmark, one short round (about 1.5 minutes; figures are rough)
	$(PY) bench/bench.py --quick

.PHONY: bench_layers
bench_layers: $(DEV) ## what each layer of a one-row prediction costs, in-process and over HTTP (~3 min)
	$(PY) bench/layers.py --py-spy 10

.PHONY: bench_fastforest
bench_fastforest: $(DEV) ## compiled forest vs scikit-learn by batch size, and the crossover
	$(PY) bench/bench_fastforest.py

.PHONY: soak
soak: $(DEV) ## 60 s at ~70% of the maximum rate: failed requests and RSS growth (about 2 minutes)
	$(PY) bench/soak.py

.PHONY: bench_profile_kind
bench_profile_kind: $(DEV) ## where a /models/KIND/prediction(s) request spends its time, by stage
	$(PY) bench/profile_kind.py

.PHONY: bench_detectors
bench_detectors: $(DEV) ## every detector kind's serving scorer vs its library, in-process
	$(PY) bench/bench_detectors.py

NAB ?= ../shared/nab

.PHONY: bench_series
bench_series: $(DEV) ## series detector kinds on NAB's labelled series, scored NAB's way (NAB=dir; ~1 min)
	$(PY) bench/bench_series.py --nab $(NAB)
