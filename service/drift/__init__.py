"""Drift: reference sketches of the training data, the serving-side binning, PSI, and the
offline comparison (KS, Wasserstein). numpy and scipy only: no web or metrics library."""
