# Benchmarks. Included from the top Makefile, after its VENV, PY and DEV definitions.
# Need wrk on PATH (Debian: apt-get install wrk); results go to bench/results/ (git-ignored).

.PHONY: bench
bench: $(DEV) ## Vigil and every detector kind vs a no-op FastAPI app, the seed's way, the libraries (~7 min)
	$(PY) bench/bench.py

.PHONY: bench_quick
bench_quick: $(DEV) ## the same benchmark, one short round (about 1.5 minutes; figures are rough)
	$(PY) bench/bench.py --quick

.PHONY: bench_layers
bench_layers: $(DEV) ## what each layer of a one-row prediction costs, in-process (about 4 minutes)
	$(PY) bench/layers.py

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
