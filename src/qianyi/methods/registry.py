"""Methods by name. Every module in :mod:`qianyi.methods` registers its methods on import, and
packages can add theirs through the entry-point group ``qianyi.methods``."""
from __future__ import annotations

import importlib
import pkgutil
import warnings
from typing import Any, TypeVar

from ..errors import ConfigError, QianyiWarning, UnknownNameError
from .base import Method

M = TypeVar("M", bound=type)
METHODS: dict[str, type[Method]] = {}
_loaded = False


def register(cls: M) -> M:
    """Class decorator: make a :class:`Method` subclass available by its ``name``."""
    name = getattr(cls, "name", "")
    if not name:
        raise ValueError(f"{cls.__name__} needs a non-empty class attribute 'name'")
    claim(METHODS, name, cls, "method")
    return cls


def claim(table: dict[str, Any], name: str, cls: type, what: str) -> None:
    """Put ``cls`` in a registry ``table`` under ``name``. The same class defined again (same module and
    qualified name: a notebook cell or a script run again, a module reloaded) replaces the old one, with a
    warning; another class claiming the name is refused."""
    old = table.get(name)
    if old is not None and old is not cls:
        if (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"a {what} named {name!r} is already registered ({old.__module__}.{old.__qualname__}); "
                             f"give {cls.__qualname__} another name")
        warnings.warn(f"{what} {name!r} is redefined ({cls.__module__}.{cls.__qualname__}, e.g. a notebook cell run "
                      "again): the new class replaces the old one", QianyiWarning, stacklevel=3)
    table[name] = cls


#: The entry-point group other packages register methods in: ``[project.entry-points."qianyi.methods"]``
#: ``mine = "mypackage.mymethod"`` (the module registers its class with :func:`register` when imported).
PLUGIN_GROUP = "qianyi.methods"


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    from .. import methods as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name not in ("base", "registry"):
            importlib.import_module(f"{pkg.__name__}.{info.name}")
    load_plugins(PLUGIN_GROUP, "method")  # methods of other packages: `qianyi.methods` entry points


def load_plugins(group: str, kind: str) -> None:
    """Import the module of every entry point in ``group`` (its ``@register...`` runs); a plugin that fails to
    import is left out with a warning naming it (``kind``: what it registers, for the message)."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=group):
        try:
            ep.load()
        except Exception as exc:  # a broken plugin must not break the built-ins, nor pass unnoticed
            warnings.warn(f"the {kind} plugin {ep.name!r} ({ep.value}) failed to load and is left out: "
                          f"{type(exc).__name__}: {exc}", QianyiWarning, stacklevel=4)


def available_methods() -> dict[str, type[Method]]:
    """Every registered method (built-in and plugins), by name in alphabetical order."""
    _load_all()
    return dict(sorted(METHODS.items()))


def get_method(name: str, **hparams: Any) -> Method:
    """Instantiate the method registered as ``name`` with ``hparams``."""
    methods = available_methods()
    if name not in methods:
        raise UnknownNameError(f"unknown method {name!r}; available: {', '.join(methods)}")
    cls = methods[name]
    known = cls.hparam_defaults()
    unknown = [k for k in hparams if k not in known]
    if unknown:
        raise UnknownNameError(f"method {name!r} has no hyper-parameter {', '.join(map(repr, unknown))}; "
                               f"it has: {', '.join(known) or 'none'}")
    for k, v in hparams.items():  # (a method's tuple(hidden) split a string into characters, bytes into numbers)
        if isinstance(known[k], (tuple, list)) and (isinstance(v, (str, bytes)) or not hasattr(v, "__iter__")):
            what = "the string" if isinstance(v, str) else f"{type(v).__name__}"
            raise ConfigError(f"{name}: setting {k} must be a list like {list(known[k])!r}, got {what} {v!r}; give a "
                              f"list (--set {k}={','.join(map(str, known[k]))} on the command line)")
    method = cls(**hparams)
    method.check_hparams()
    return method
