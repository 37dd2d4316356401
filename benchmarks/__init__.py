"""Benchmarks: performance ratios (perf_*) measured in one run on one machine; results go to results/."""
