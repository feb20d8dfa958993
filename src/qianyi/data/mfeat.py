"""UCI Multiple Features (``mfeat``): six aligned views of 2,000 handwritten digits, split into two domains.

``mfeat?views=fou,kar&domain=A`` reads ``$QIANYI_DATA/uci-mfeat/mfeat-{fou,kar}.csv`` (see that
folder's SOURCE.md) and puts the views side by side, in the order given; the columns are named
``VIEW_J`` (``fou_0`` ... ``fou_75``, ``kar_0`` ... ``kar_63``), which records where each view's
columns are (:func:`view_widths`).

The domain split is label-free in the sense that matters (it is a rule on one input feature, fixed
before any model is trained) and reproducible (no randomness): within each class, the 200 digits are
ranked by a morphological feature — column ``by`` of the ``mor`` view (default 5), ties broken by row
number — and the lower 100 form domain ``A``, the upper 100 domain ``B``. Every class thus has 100
digits on each side (no label shift) while the shape measured by that feature differs between the
sides (a covariate shift, within every class). The ``mor`` view is then not a feature (it would
reveal the domain), so ``views`` may not name it unless ``domain=all``. docs/cotraining.md reports
the shift (source-only vs oracle accuracy of A -> B).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError, DatasetNotFoundError
from .builtin import DIGIT_NAMES, data_folder, dataset, name_list
from .domain import Domain, view_widths  # noqa: F401  (view_widths: re-exported)

#: The six views and their widths (SOURCE.md): Fourier coefficients of the contour, profile correlations,
#: Karhunen-Loeve coefficients, 2x3 pixel averages, Zernike moments, morphological features.
VIEWS = {"fou": 76, "fac": 216, "kar": 64, "pix": 240, "zer": 47, "mor": 6}
#: The continuous ``mor`` columns a domain split may rank by (columns 0-2 are small counts with many ties).
SPLIT_COLUMNS = (3, 4, 5)
FOLDER = "uci-mfeat"
N_SAMPLES = 2000


def _read_view(folder: Path, view: str) -> tuple[np.ndarray, np.ndarray]:
    path = folder / f"mfeat-{view}.csv"
    if not path.is_file():
        raise DatasetNotFoundError(f"mfeat: {path} is missing; the uci-mfeat folder should hold mfeat-{view}.csv "
                                   "(see its SOURCE.md)")
    try:
        table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise DataError(f"mfeat: {path} is not a numeric CSV table ({exc})") from None
    want = VIEWS[view] + 1
    if table.shape != (N_SAMPLES, want):
        raise DataError(f"mfeat: {path} holds a {table.shape[0]}x{table.shape[1]} table; expected {N_SAMPLES}x{want} "
                        f"({VIEWS[view]} features and the label)")
    return table[:, :-1], table[:, -1].astype(np.int64)


def _folder(root: Path | None) -> Path:
    return data_folder(root, FOLDER, "mfeat")


def domain_mask(mor: np.ndarray, y: np.ndarray, by: int) -> np.ndarray:
    """True for the samples of domain A: per class, the lower half by ``mor[:, by]`` (ties: lower row first)."""
    in_a = np.zeros(len(y), bool)
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        order = rows[np.lexsort((rows, mor[rows, by]))]
        in_a[order[:len(rows) // 2]] = True
    return in_a


def _parse_views(views: str, domain: str) -> list[str]:
    names = name_list("mfeat?views", views, list(VIEWS), "view", f"give a comma-separated list of {', '.join(VIEWS)}",
                      unknown=DataError)
    if "mor" in names and domain != "all":
        raise DataError(f"mfeat?views={views}&domain={domain}: the mor view decides the domain split, so it may not be "
                        "a feature of domain A or B (it would reveal the domain); leave it out, or use domain=all")
    return names


@dataset("mfeat", "UCI Multiple Features: 2,000 digits in six aligned views from DATA/uci-mfeat; "
         "?views=fou,kar (side by side) &domain=A|B|all (A/B: each class split at the median of a morphological "
         "feature, ?by=5)", options=("views", "domain", "by"))
def load_mfeat(root: Path | None, views: str = "fou,kar", domain: str = "all", by: str = "5") -> Domain:
    """The digits of ``domain`` with the features of ``views`` (see the module docstring)."""
    if domain not in ("A", "B", "all"):
        raise DataError(f"mfeat?domain={domain}: the domain must be A, B or all")
    if by not in tuple(map(str, SPLIT_COLUMNS)):
        raise DataError(f"mfeat?by={by}: the split feature must be one of the continuous mor columns "
                        f"{', '.join(map(str, SPLIT_COLUMNS))}")
    names = _parse_views(views, domain)
    folder = _folder(root)
    parts, y = [], None
    for v in names:
        X, labels = _read_view(folder, v)
        if y is not None and not np.array_equal(labels, y):
            raise DataError(f"mfeat: the labels of mfeat-{v}.csv differ from mfeat-{names[0]}.csv; the rows of the "
                            "views must be aligned")
        parts.append(X)
        y = labels
    assert y is not None
    keep = np.arange(N_SAMPLES)
    if domain != "all":
        mor, mor_y = _read_view(folder, "mor")
        if not np.array_equal(mor_y, y):
            raise DataError("mfeat: the labels of mfeat-mor.csv differ from the other views'; the rows must be aligned")
        in_a = domain_mask(mor, y, int(by))
        keep = np.flatnonzero(in_a if domain == "A" else ~in_a)
    features = tuple(f"{v}_{j}" for v in names for j in range(VIEWS[v]))
    spec = f"mfeat?views={','.join(names)}&domain={domain}" + (f"&by={by}" if by != "5" else "")
    # A and B hold disjoint rows: each is its own pool (never halved against the other); "all" holds both
    origin = "uci-mfeat" if domain == "all" else f"uci-mfeat:{domain}:{by}"
    return Domain(np.concatenate(parts, 1)[keep], y[keep], name=spec, class_names=DIGIT_NAMES, origin=origin,
                  feature_names=features)
