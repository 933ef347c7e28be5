"""Watches: PromQL queries scored as time series every step, exported as metrics.

``config`` reads the watch file, ``prometheus`` queries Prometheus' HTTP API, ``runner`` keeps
one causal ``SeriesStream`` per watched series and polls, ``metrics`` exports the answers.
"""
