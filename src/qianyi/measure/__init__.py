"""Measure transfer: distances between domains, per-layer profiles, layer transferability, an advisor.

>>> import qianyi
>>> from qianyi.measure import distances, layer_profile, advise
>>> task = qianyi.load_task("mnist", "digits")              # doctest: +SKIP
>>> d = distances(task.source.X, task.target.X, ["mk-mmd", "a-distance"])  # doctest: +SKIP
>>> {k: round(v, 4) for k, v in d.items()}                  # doctest: +SKIP
{'mk-mmd': 0.0548, 'a-distance': 1.544}
>>> advise(task).report()                                 # doctest: +SKIP
"""
from .advisor import Advice, advise
from .metrics import DEFAULT_METRICS, METRICS, distance, distances
from .profile import LayerProfile, compare_table, layer_profile, plot_profiles
from .report import MeasureResult, measure
from .transferability import ProtocolPair, TaskData, TransferabilityResult, dissimilar_pair, similar_pair
from .transferability import transferability as layer_transferability  # the module keeps its name

__all__ = ["DEFAULT_METRICS", "METRICS", "Advice", "LayerProfile", "MeasureResult", "ProtocolPair", "TaskData",
           "TransferabilityResult", "advise", "compare_table", "dissimilar_pair", "distance", "distances",
           "layer_profile", "layer_transferability", "measure", "plot_profiles", "similar_pair"]
