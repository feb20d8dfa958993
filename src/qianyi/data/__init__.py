"""Data layer: domains, tasks, built-in offline datasets, readers, canvases and shifts."""
from .builtin import DATASETS, resolve_data_dir
from . import mfeat  # noqa: F401  (registers the built-in dataset 'mfeat')
from . import audio  # noqa: F401  (registers the built-in dataset 'fsdd' and the reader 'wav:DIR')
from .canvas import Canvas, common_canvas, to_canvas
from .domain import Domain, TransferTask
from .tasks import load_domain, load_task, load_via, parse_spec

__all__ = ["DATASETS", "Canvas", "Domain", "TransferTask", "common_canvas", "load_domain", "load_task", "load_via",
           "parse_spec", "resolve_data_dir", "to_canvas"]
