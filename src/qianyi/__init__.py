"""qianyi (迁移): deep transfer learning — measure domain distance, adapt with one engine, report honestly.

>>> import qianyi
>>> task = qianyi.load_task("mnist", "digits")                      # doctest: +SKIP
>>> result, fit = qianyi.run("dan", task, qianyi.TrainConfig(seed=0))  # doctest: +SKIP
>>> result.target_accuracy                                            # doctest: +SKIP
"""
__version__ = "0.1.0"

from .data import DATASETS, Domain, TransferTask, load_domain, load_task  # noqa: E402
from .methods import Method, available_methods, get_method, register  # noqa: E402
from .train import RunResult, TrainConfig, Trainer, run  # noqa: E402
from .train.artefact import SavedModel, load_model  # noqa: E402


def __getattr__(name: str):  # DomainAdapter and its scorer load scikit-learn: only when asked for
    if name in ("DomainAdapter", "label_free_scorer"):
        from .train import estimator

        return getattr(estimator, name)
    raise AttributeError(f"module 'qianyi' has no attribute {name!r}")


def __dir__() -> list[str]:  # the lazy names too (tab completion)
    return sorted({*globals(), "DomainAdapter", "label_free_scorer"})


__all__ = ["DATASETS", "Domain", "DomainAdapter", "Method", "RunResult", "TrainConfig", "Trainer", "TransferTask", "__version__",
           "SavedModel", "available_methods", "get_method", "load_domain", "label_free_scorer", "load_model", "load_task", "register", "run"]
