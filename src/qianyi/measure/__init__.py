"""Measure transfer: distances between domains, per-layer profiles, layer transferability, an advisor.

>>> from qianyi.measure import distances
>>> distances(Xs, Xt, ["mk-mmd", "a-distance"])          # doctest: +SKIP
{'mk-mmd': 0.21, 'a-distance': 1.62}
"""
from .distance import DEFAULT_METRICS, METRICS, distance, distances
from .profile import LayerProfile, compare_table, layer_profile, plot_profiles

__all__ = ["DEFAULT_METRICS", "METRICS", "LayerProfile", "compare_table", "distance", "distances", "layer_profile",
           "plot_profiles"]
