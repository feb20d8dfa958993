"""qianyi from a notebook (Python API only): cells run again, methods edited in place, data of one's own."""
from __future__ import annotations

import subprocess
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import pytest

import qianyi
from qianyi.data import Domain, TransferTask
from qianyi.errors import DataError, QianyiWarning
from qianyi.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
FAST = TrainConfig(epochs=1, steps_per_epoch=4, batch_size=16, progress=False)

CELL = """
from qianyi import Method, register

@register
class Mine(Method):
    name = "qy-nb-mine"

    def loss(self, batch):
        return {"cls": SCALE * self.source_ce(batch)}
"""


def _blob_task(seed: int = 0) -> TransferTask:
    rng = np.random.default_rng(seed)
    Xs = rng.normal(size=(120, 5)).astype(np.float32)
    Xt = (rng.normal(size=(120, 5)) + 0.5).astype(np.float32)
    return TransferTask.from_domains(Domain(Xs, (Xs[:, 0] > 0).astype(int), "src"),
                                     Domain(Xt, (Xt[:, 0] > 0.5).astype(int), "tgt"), seed=0)


def _other_code(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, QianyiWarning) and "other" in str(w.message)
            and "code" in str(w.message)]


@pytest.fixture
def cell(monkeypatch):
    """A module with no file, as a notebook's ``__main__`` is: ``run(source)`` executes a cell in it."""
    from qianyi.methods import registry

    registry.available_methods()
    monkeypatch.setattr(registry, "METHODS", dict(registry.METHODS))
    module = types.ModuleType("qy_nb_cell")
    monkeypatch.setitem(sys.modules, "qy_nb_cell", module)

    def run(source: str, **globs):
        module.__dict__.update(globs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", QianyiWarning)  # "redefined": tested on its own below
            exec(compile(source, "<cell>", "exec"), module.__dict__)
        return module.__dict__

    return run


def test_a_method_edited_in_a_cell_is_other_code(cell):
    from qianyi.train.store import code_digest

    v1 = code_digest(cell(CELL, SCALE=1.0)["Mine"])
    assert "+" in v1 and v1.startswith(code_digest() + "+")
    assert code_digest(cell(CELL, SCALE=1.0)["Mine"]) == v1  # run again unchanged: the same code
    assert code_digest("qy-nb-mine") == v1  # by name: the registered class
    assert code_digest(cell(CELL, SCALE=0.0)["Mine"]) != v1  # a global it reads changed
    edited = CELL.replace("SCALE * self.source_ce(batch)", "SCALE * self.source_ce(batch) * 2")
    assert code_digest(cell(edited, SCALE=1.0)["Mine"]) not in (v1, code_digest())
    moved = CELL.replace("class Mine", "\n\nclass Mine")  # blank lines only: the same code
    assert code_digest(cell(moved, SCALE=1.0)["Mine"]) == v1
    body = CELL.replace("SCALE", "scale").replace("@register\n", "")  # a class made by a function, its scale held
    closure = "def define(scale):\n" + "\n".join("    " + line for line in body.splitlines()) + "\n    return Mine\n"
    ns = cell(closure)
    assert code_digest(ns["define"](1.0)) != code_digest(ns["define"](0.0))
    assert code_digest(ns["define"](1.0)) == code_digest(ns["define"](1.0))


ATTR_CELL = """
from qianyi import Method

class Attr(Method):
    name = "qy-nb-attr"

    def loss(self, batch):
        w = 1.0 if batch.step > 3 else 0.5
        return {"cls": w * self.source_ce(batch)}
"""


def test_a_global_named_as_an_attribute_the_method_reads_is_not_its_code(cell, tmp_path):
    """``batch.step`` put "step" among the names the digest read as globals: a notebook's unrelated ``step = 3``
    changed the method's digest, and the next run warned that its checkpoint was of other code."""
    from qianyi.train.store import code_digest

    v1 = code_digest(cell(ATTR_CELL, step=5)["Attr"])
    assert code_digest(cell(ATTR_CELL, step=50)["Attr"]) == v1
    assert code_digest(cell(ATTR_CELL.replace("batch.step", "step"), step=5)["Attr"]) \
        != code_digest(cell(ATTR_CELL.replace("batch.step", "step"), step=50)["Attr"])  # a global it does read
    task = _blob_task()
    qianyi.run(cell(ATTR_CELL, step=5)["Attr"](), task, FAST, out=tmp_path / "a")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        qianyi.run(cell(ATTR_CELL, step=3)["Attr"](), task, FAST, out=tmp_path / "a")
    assert not _other_code(caught)


HELPER_CELL = """
from torch import nn

class Base(nn.Module):
    def scale(self):
        return BASE_SCALE

class Penalty(Base):
    def forward(self, f):
        return self.scale() * PEN_SCALE * f.pow(2).mean() + (Other.k if Other else 0)

class Other:
    k = OTHER_K
    uses = Penalty  # (a cycle: Penalty reads Other, Other holds Penalty)

penalty = Penalty()
"""

HELPER_METHOD = """
from qianyi import Method

class Mine(Method):
    name = "qy-nb-helper"

    def loss(self, batch):
        return {"cls": self.source_ce(batch), "pen": USE(batch.source_inputs)}
"""


def test_a_helper_class_of_another_cell_is_part_of_the_method_code(cell):
    """A helper ``nn.Module`` defined in another cell was hashed by nothing: editing it left the digest as it was,
    and runs of the old helper were reused without a word."""
    from qianyi.train.store import code_digest

    def digest(use: str, **globs) -> str:
        cell(HELPER_CELL, **{"BASE_SCALE": 1.0, "PEN_SCALE": 1.0, "OTHER_K": 0, **globs})
        return code_digest(cell(HELPER_METHOD.replace("USE", use))["Mine"])

    for use in ("Penalty()", "penalty"):  # the class, or an object of it (its class's code)
        v1 = digest(use)
        assert "+" in v1 and digest(use) == v1  # the cells run again unchanged
        assert digest(use, PEN_SCALE=0.0) != v1  # the helper's own global
        assert digest(use, BASE_SCALE=0.0) != v1  # its file-less base class's
        assert digest(use, OTHER_K=1) != v1  # a class the helper reads
        edited = HELPER_CELL.replace("f.pow(2).mean()", "f.abs().mean()")
        cell(edited, BASE_SCALE=1.0, PEN_SCALE=1.0, OTHER_K=0)
        assert code_digest(cell(HELPER_METHOD.replace("USE", use))["Mine"]) != v1  # the helper edited


def test_reusing_runs_of_an_edited_cell_method_warns_for_each_folder(cell, tmp_path):
    from qianyi.train import store
    from qianyi.train.result import RunResult

    task = _blob_task()
    for name in ("a", "b"):
        qianyi.run(cell(CELL, SCALE=1.0)["Mine"](), task, FAST, out=tmp_path / name)
    cell(CELL, SCALE=0.0)  # the cell edited and run again
    # a stored run found by its fingerprint (bench, select): every stale folder is named, each once
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name in ("a", "b", "a"):
            fp = RunResult.read(tmp_path / name / "result.json").fingerprint
            assert store.finished(tmp_path / name, fp) is not None
    said = _other_code(caught)
    assert len(said) == 2 and str(tmp_path / "a") in said[0] and str(tmp_path / "b") in said[1]
    assert "qy-nb-mine" in said[0] and "delete" in said[0]
    # run(out=) resumes the folder's checkpoint: also named for each folder
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name in ("a", "b"):
            qianyi.run(cell(CELL, SCALE=0.0)["Mine"](), task, FAST, out=tmp_path / name)
    said = _other_code(caught)
    assert len(said) == 2 and str(tmp_path / "a") in said[0] and str(tmp_path / "b") in said[1]


def test_a_main_class_from_stdin_has_a_code_digest_stable_across_processes():
    """``python -`` (and a notebook) defines methods in ``__main__``, which has no file to hash."""
    head = "from qianyi import Method\nfrom qianyi.train.store import code_digest\n"
    v1 = "class Mine(Method):\n    name = 'qy-stdin'\n    def loss(self, batch): return {'cls': self.source_ce(batch)}\n"
    v2 = v1.replace("self.source_ce(batch)}", "0.0 * self.source_ce(batch)}")
    show = "print(code_digest(Mine))\n"

    def digests(source: str) -> list[str]:
        env = {"PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
        out = subprocess.run([sys.executable, "-"], input=source, capture_output=True, text=True, env=env, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout.split()

    first, edited = digests(head + v1 + show + v2 + show)  # redefined in the same process
    (again,) = digests(head + v1 + show)  # a fresh process (a restarted kernel), the same code
    assert "+" in first and first != edited and again == first


def test_a_cell_defining_a_method_or_validator_can_run_again(cell, monkeypatch):
    from qianyi.methods import registry
    from qianyi.select import validators as V

    first = cell(CELL, SCALE=1.0)["Mine"]
    with pytest.warns(QianyiWarning, match="'qy-nb-mine' is redefined"):
        exec(compile(CELL, "<cell>", "exec"), sys.modules["qy_nb_cell"].__dict__)
    assert registry.METHODS["qy-nb-mine"] is not first
    assert registry.METHODS["qy-nb-mine"] is sys.modules["qy_nb_cell"].Mine

    class Mine(registry.Method):  # another class (another module) claiming the name: still refused
        name = "qy-nb-mine"

    with pytest.raises(ValueError, match=r"already registered \(qy_nb_cell.Mine\)"):
        registry.register(Mine)
    monkeypatch.setattr(V, "VALIDATORS", dict(V.VALIDATORS))
    source = ("from qianyi.select.validators import Validator, register_validator\n"
              "@register_validator\nclass Val(Validator):\n    name = 'qy-nb-val'\n    higher_is_better = True\n"
              "    needs = frozenset({'target'})\n    paper = 'mine'\n    def __call__(self, p): return 0.0\n")
    cell(source)
    with pytest.warns(QianyiWarning, match="'qy-nb-val' is redefined"):
        exec(compile(source, "<cell>", "exec"), sys.modules["qy_nb_cell"].__dict__)
    assert V.VALIDATORS["qy-nb-val"] is sys.modules["qy_nb_cell"].Val


class _ReluInForward(torch.nn.Module):
    """A hand-written network: its ReLUs live in forward, not among its children."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.out = torch.nn.Linear(5, 16), torch.nn.Linear(16, 16), torch.nn.Linear(16, 2)

    def forward(self, x):
        return self.out(F.relu(self.fc2(F.relu(self.fc1(x)))))


class _FlattenInForward(torch.nn.Module):
    """torchvision style: features, then torch.flatten in forward, then the classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.BatchNorm2d(4))
        self.classifier = torch.nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class _InOrder(torch.nn.Module):
    """A forward that is exactly its children in order."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.act, self.drop, self.out = (torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Dropout(0.5),
                                                  torch.nn.Linear(8, 2))

    def forward(self, x):
        return self.out(self.drop(self.act(self.fc(x))))


def test_as_backbone_refuses_a_module_whose_forward_does_more_than_its_children():
    from qianyi.errors import DataError
    from qianyi.nn import as_backbone

    x = torch.randn(4, 5)
    with pytest.raises(DataError, match="forward of its own.*F.relu.*example_input=.*children_in_order=True"):
        as_backbone(_ReluInForward())
    with pytest.raises(DataError, match="do not give _ReluInForward's outputs.*largest difference"):
        as_backbone(_ReluInForward(), example_input=x)
    with pytest.raises(DataError, match="chained one after another fail on example_input.*torch.flatten"):
        as_backbone(_FlattenInForward(), example_input=np.zeros((2, 1, 8, 8)))  # numpy float64: cast as it runs
    # torchvision style with flatten_logits: the chain equals its forward, and the check leaves its modes as they were
    net = _FlattenInForward().train()
    net.features[2].eval()
    bb = as_backbone(net, flatten_logits=True, example_input=torch.randn(3, 1, 8, 8))
    assert bb.group_names == ("features", "logits") and net.training and not net.features[2].training
    assert net.features[2].num_batches_tracked.item() == 0  # the probe ran in eval mode: no statistics updated
    # a forward that is its children in order: accepted when checked (dropout off in the check) or confirmed
    assert as_backbone(_InOrder(), example_input=x).group_names == ("fc", "act", "drop", "logits")
    assert as_backbone(_InOrder(), children_in_order=True).group_names == ("fc", "act", "drop", "logits")
    assert as_backbone(torch.nn.Sequential(torch.nn.Linear(5, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2)))


def test_a_plain_module_as_backbone_is_told_its_children_run_in_order():
    from qianyi.errors import DataError

    task = _blob_task()
    with pytest.raises(DataError, match="as_backbone.*children in order with nothing between them"):
        qianyi.run("source-only", task, FAST, backbone=_ReluInForward())


def test_a_dataframe_domain_keeps_its_column_names_and_a_reordered_target_is_matched_by_name():
    import pandas as pd

    from qianyi.errors import DataError

    rng = np.random.default_rng(0)
    cols = ["a", "b", "c", "d"]
    Xs, Xt = rng.normal(size=(60, 4)), rng.normal(size=(60, 4)) + 0.3
    src = Domain(pd.DataFrame(Xs, columns=cols), (Xs[:, 0] > 0).astype(int), "s")
    assert src.feature_names == tuple(cols)
    task = TransferTask.from_domains(src, Domain(pd.DataFrame(Xt, columns=cols)[cols[::-1]], None, "t"), seed=0)
    np.testing.assert_array_equal(task.target.X, Xt.astype(np.float32))  # back in the source's order
    assert task.target.feature_names == tuple(cols)
    with pytest.raises(DataError, match="different feature columns.*lacks \\['d'\\]"):
        TransferTask.from_domains(src, Domain(pd.DataFrame(Xt, columns=["a", "b", "c", "e"]), None, "t"))
    assert Domain(pd.DataFrame(Xs), None, "t").feature_names is None  # pandas' default integer columns: positions


def test_a_dataframe_with_repeated_column_names_is_matched_by_position_with_a_warning():
    """Columns of one-hot blocks joined by pd.concat may repeat a name (pandas allows it): such a frame, accepted
    before frames' names were read, was refused ("duplicate feature names")."""
    import pandas as pd

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    dup = pd.DataFrame(X, columns=["x", "x", "y"])
    with pytest.warns(QianyiWarning, match=r"'s': the DataFrame's column names are not unique \(\['x'\] repeat\).*"
                      "matched by position"):
        src = Domain(dup, (X[:, 0] > 0).astype(int), "s")
    assert src.feature_names is None
    with pytest.warns(QianyiWarning, match="not unique"):
        task = TransferTask.from_domains(src, Domain(dup.copy() + 0.3, None, "t"), seed=0)
    np.testing.assert_array_equal(task.target.X, (X + 0.3).astype(np.float32))  # by position
    assert task.source.feature_names is None and task.target.feature_names is None


def test_labels_that_skip_class_indices_are_warned_about():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 3))
    y = np.where(X[:, 0] > 0, 7, 3)
    with pytest.warns(QianyiWarning, match=r"labels \[3, 7\] are class indices.*8 outputs, 6 of them for the classes "
                                           r"0, 1, 2, 4, 5, 6.*numpy.unique\(y, return_inverse=True\)"):
        task = TransferTask.from_domains(Domain(X, y, "s"), Domain(X + 1, None, "t"), seed=0)
    assert task.n_classes == 8
    classes, codes = np.unique(y, return_inverse=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", QianyiWarning)  # encoded, or classes named: nothing to say
        TransferTask.from_domains(Domain(X, codes, "s"), Domain(X + 1, None, "t"), seed=0)
        TransferTask.from_domains(Domain(X, y, "s", class_names=[str(k) for k in range(8)]), Domain(X + 1, None, "t"))


def test_prepare_matches_a_dataframes_columns_before_judging_whether_it_looks_prepared(tmp_path):
    """Raw data with its columns in another order looked standardised already: a warning that, followed, would make
    the predictions wrong."""
    import pandas as pd

    rng = np.random.default_rng(0)
    y = np.arange(200) % 2
    X = np.c_[rng.normal(0, 1, 200) + 2 * y, rng.normal(0, 1, 200), rng.normal(50, 10, 200)]
    cols = ["a", "b", "c"]
    for name, rows in (("s", slice(0, 100)), ("t", slice(100, 200))):
        pd.DataFrame(X[rows], columns=cols).assign(label=y[rows]).to_csv(tmp_path / f"{name}.csv", index=False)
    task = qianyi.load_task(f"csv:{tmp_path / 's.csv'}", f"csv:{tmp_path / 't.csv'}")
    qianyi.run("source-only", task, FAST, out=tmp_path / "run")
    m = qianyi.load_model(tmp_path / "run")
    df = pd.DataFrame(X[100:], columns=cols)
    with warnings.catch_warnings():
        warnings.simplefilter("error", QianyiWarning)
        reordered = m.prepare(df[["c", "b", "a"]])
    np.testing.assert_array_equal(reordered.X, m.prepare(df).X)
    with pytest.warns(QianyiWarning, match="looks prepared already"):  # prepared data is still told
        m.prepare(pd.DataFrame(m.prepare(df).X, columns=cols)[["b", "a", "c"]])


@pytest.mark.filterwarnings("ignore:.*chance level", "ignore:.*collapsed")  # 4 steps: an untrained network
def test_prepare_reads_the_uci_digits_block_counts_as_the_digits_files_do(tmp_path):
    from sklearn.datasets import load_digits

    task = qianyi.load_task("digits", "digits+rot30", max_samples=300)
    qianyi.run("source-only", task, FAST, out=tmp_path / "run")
    m = qianyi.load_model(tmp_path / "run")
    images = load_digits().images  # float64 0..16, as the UCI files hold them
    from_spec = m.prepare("digits").X
    np.testing.assert_allclose(m.prepare(images).X, from_spec, atol=1e-6)
    np.testing.assert_allclose(m.prepare(images.astype(np.uint8)).X, from_spec, atol=1e-6)
    np.testing.assert_allclose(m.prepare(images / 16.0).X, from_spec, atol=1e-6)  # already in [0, 1]: as it is


def test_score_all_by_default_gives_a_runs_recorded_scores():
    """score_all drew 2000 rows per split where the engine scores 1000: the same network, other numbers."""
    from qianyi.select import SelectionData, score_all
    from qianyi.select.validators import SELECTION_SAMPLES

    assert TrainConfig().selection_samples == SELECTION_SAMPLES and TrainConfig().seed == 0
    rng = np.random.default_rng(0)
    Xs, Xt = rng.normal(size=(3000, 5)), rng.normal(size=(3000, 5)) + 0.5
    task = TransferTask.from_domains(Domain(Xs, (Xs[:, 0] > 0).astype(int), "s"), Domain(Xt, None, "t"), seed=0)
    assert min(len(task.source), len(task.target)) > 2 * SELECTION_SAMPLES  # a subsample, not every row
    config = TrainConfig(epochs=1, steps_per_epoch=4, batch_size=16, progress=False, validators=("snd", "entropy"))
    result, fit = qianyi.run("source-only", task, config)
    again = score_all(fit.model, SelectionData.from_task(task), ["snd", "entropy"])
    assert again == {k: result.scores[k] for k in ("snd", "entropy")}


@pytest.mark.filterwarnings("ignore:.*too few to trust")  # a small table: only the API is tested
def test_run_results_have_a_short_repr_and_specs_may_be_paths(tmp_path):
    import pandas as pd

    from qianyi.errors import DataError
    from qianyi.measure import measure

    rng = np.random.default_rng(0)
    for name, shift in (("s", 0.0), ("t", 0.5)):
        X = rng.normal(size=(120, 4)) + shift
        pd.DataFrame(X, columns=list("abcd")).assign(label=(X[:, 0] > shift).astype(int)).to_csv(
            tmp_path / f"{name}.csv", index=False)
    task = qianyi.load_task(tmp_path / "s.csv", tmp_path / "t.csv", val_fraction=0.5)  # paths: read by their suffix
    assert task.source.name == f"csv:{tmp_path / 's.csv'}" and task.sample_shape == (4,)  # as the spec names it
    assert qianyi.load_domain(tmp_path / "t.csv").feature_names == tuple("abcd")
    with pytest.raises(DataError, match="by its suffix.*'folder:"):
        qianyi.load_task(tmp_path, tmp_path / "t.csv")
    result, fit = qianyi.run("dann", task, TrainConfig(epochs=3, steps_per_epoch=4, batch_size=16, progress=False))
    text = repr(result)
    assert len(text) < 400 and text.startswith("RunResult('dann', ") and "seed=0, target_accuracy=0." in text
    assert "epochs=3" in text and "history" not in text and len(repr(result.to_dict())) > 1000
    # measure takes a network as advise does (it took paths only: a TypeError on fit.model)
    res = measure(task, layers=True, adapt=[], model=fit.model, permutations=0, samples=50, log=None)
    assert [p.label for p in res.profiles] == ["given model (Backbone)"]
    with pytest.raises(DataError, match="as_backbone"):
        measure(task, layers=True, model=torch.nn.Sequential(torch.nn.Linear(4, 2)), permutations=0, log=None)


def test_a_path_is_read_whole_by_its_suffix_and_a_saved_model_prepares_one(tmp_path):
    """A Path was turned into a spec string and parsed as one: a '?' in it started options ("option 'x/s.csv' is
    not KEY=VALUE"); ``books.svmlight.gz`` was said to have none of the suffixes it has; ``SavedModel.prepare``
    took no Path (a dtype error)."""
    import gzip

    import pandas as pd
    from sklearn.datasets import dump_svmlight_file

    from qianyi.errors import DataError, DatasetNotFoundError

    rng = np.random.default_rng(0)
    odd = tmp_path / "dir?x"
    odd.mkdir()
    for name, shift in (("s", 0.0), ("t", 0.5)):
        X = rng.normal(size=(120, 4)) + shift
        pd.DataFrame(X, columns=list("abcd")).assign(label=(X[:, 0] > shift).astype(int)).to_csv(
            odd / f"{name}.csv", index=False)
    assert qianyi.load_domain(odd / "t.csv").X.shape == (120, 4)
    task = qianyi.load_task(odd / "s.csv", odd / "t.csv", val_fraction=0.5)
    assert task.source.name == f"csv:{odd / 's.csv'}"
    with pytest.raises(DatasetNotFoundError, match="'.*dir\\?x/none.csv' does not exist"):
        qianyi.load_domain(odd / "none.csv")
    X = rng.normal(size=(50, 6)).clip(0)
    dump_svmlight_file(X, (X[:, 0] > 0.5).astype(int), str(tmp_path / "b.svmlight"))
    for comp in ("gz", "xz"):  # the svmlight reader inflates these itself
        packed = tmp_path / f"b.svmlight.{comp}"
        opener = gzip.open if comp == "gz" else __import__("lzma").open
        with opener(packed, "wb") as fh:
            fh.write((tmp_path / "b.svmlight").read_bytes())
        np.testing.assert_allclose(qianyi.load_domain(packed).X, qianyi.load_domain(tmp_path / "b.svmlight").X)
    with pytest.raises(DataError, match="the npz reader does not read .gz files; decompress it"):
        qianyi.load_domain(tmp_path / "x.npz.gz")
    with pytest.raises(DataError, match="by its suffix .*\\.svmlight\\[\\.gz\\|.*and '\\.tar\\.gz' is none "
                                        "of them.*'csv:"):
        qianyi.load_domain(tmp_path / "x.tar.gz")
    result, _ = qianyi.run("source-only", task, FAST, out=tmp_path / "r")
    model = qianyi.load_model(tmp_path / "r")
    prepared = model.prepare(odd / "t.csv")
    np.testing.assert_array_equal(prepared.X, model.prepare(pd.read_csv(odd / "t.csv").drop(columns="label")).X)
    assert prepared.y is not None and len(model.predict(prepared)) == 120


def test_distances_mmd_test_and_layer_profile_take_data_frames():
    """A DataFrame is read by its values (torch.as_tensor indexed it by column: KeyError) (review: notebook #7)."""
    import pandas as pd
    import torch.nn as nn

    from qianyi.distances import mmd_test
    from qianyi.measure import distances, layer_profile
    from qianyi.nn import as_backbone

    a = np.random.default_rng(0).random((60, 4))
    b = a + 0.5
    assert distances(pd.DataFrame(a), pd.DataFrame(b), ["mmd", "coral"]) == distances(a, b, ["mmd", "coral"])
    assert mmd_test(pd.DataFrame(a), pd.DataFrame(b), permutations=20).mmd2 == mmd_test(a, b, permutations=20).mmd2
    net = as_backbone(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), ["fc", "act", "logits"])
    frame = layer_profile(net, pd.DataFrame(a, dtype="float32"), pd.DataFrame(b, dtype="float32"), metrics=["mmd"])
    plain = layer_profile(net, a.astype("float32"), b.astype("float32"), metrics=["mmd"])
    assert frame.values == plain.values
    # float64, pandas' and numpy's default, met the float32 network with a dtype error
    assert layer_profile(net, pd.DataFrame(a), pd.DataFrame(b), metrics=["mmd"]).values == plain.values
    assert layer_profile(net, a, b, metrics=["mmd"]).values == plain.values
    nullable = pd.DataFrame(a).astype({0: "Float64"})  # numbers held as objects: read as floats
    assert distances(nullable, pd.DataFrame(b), ["mmd"]) == pytest.approx(distances(a, b, ["mmd"]))
    text = pd.DataFrame(a).assign(city="x")
    with pytest.raises(DataError, match=r"the column\(s\) \['city'\] are not: drop or encode them"):
        distances(text, text, ["mmd"])


def test_frames_with_bool_and_nullable_columns_are_numbers_and_other_columns_are_named():
    """A frame mixing float and bool columns (pd.get_dummies' output) or with pandas' nullable Int64/Float64/boolean
    columns became an object array and was refused as 'inputs X have dtype object', naming no column."""
    import pandas as pd

    rng = np.random.default_rng(0)
    num = pd.DataFrame({"a": rng.normal(size=40), "n": np.arange(40)})
    want = num.to_numpy(np.float32)
    for frame in (num.assign(flag=num.a > 0), num.astype({"n": "Int64"}), num.astype("Float64"),
                  num.assign(flag=(num.a > 0).astype("boolean"))):
        d = Domain(frame, np.arange(40) % 2)
        np.testing.assert_array_equal(d.X[:, :2], want)
        assert d.feature_names == tuple(frame.columns) and d.X.dtype == np.float32
    np.testing.assert_array_equal(Domain(num.assign(flag=num.a > 0)).X[:, 2], num.a > 0)
    missing = num.astype({"n": "Int64"})
    missing.loc[[3, 7], "n"] = pd.NA  # pandas' missing value: refused as NaN is, naming rows and column
    with pytest.raises(DataError, match=r"NaN or inf in 2 sample.*first rows: \[3, 7\]\) in the column\(s\) \['n'\]"):
        Domain(missing)
    with pytest.raises(DataError, match=r"column\(s\) that are not numbers: \['city'\].*encode them"):
        Domain(num.assign(city=["x", "y"] * 20))
    mixed = np.c_[want, np.array(["x", "y"] * 20)[:, None]].astype(object)
    mixed[:, :2] = want  # numbers held as objects are numbers; a column of text is named by position
    with pytest.raises(DataError, match=r"the column\(s\) \[2\] are not numbers"):
        Domain(mixed)
    np.testing.assert_array_equal(Domain(mixed[:, :2]).X, want)


def test_dates_time_spans_categories_and_number_like_text_are_named_never_read_as_numbers():
    """(review diff6 #1) Reading frames through to_numpy(float) took dates for nanoseconds since 1970, time spans for
    nanoseconds, ZIP codes '02134' for 2134.0 and an object array of number strings for numbers; the CSV reader
    refuses them, and so did Domain before."""
    import pandas as pd

    num = pd.DataFrame({"a": np.arange(6.0)})
    for col, values in (("when", pd.date_range("2020-01-01", periods=6, tz="UTC")),
                        ("took", pd.to_timedelta(np.arange(6), unit="s")), ("zip", ["02134"] * 6),
                        ("kind", pd.Categorical([1, 2] * 3)), ("z", np.arange(6) * 1j)):
        with pytest.raises(DataError, match=rf"column\(s\) that are not numbers: \[{col!r}\]"):
            Domain(num.assign(**{col: values}), np.arange(6) % 2)
    with pytest.raises(DataError, match=r"the column\(s\) \[1\] are not numbers"):
        Domain(np.array([[1.0, "02134"]] * 4, dtype=object), [0, 1, 0, 1])
    # (review diff7 #2) numbers held as objects are numbers: Decimal (pd.read_sql of SQL NUMERIC), None as missing
    from decimal import Decimal

    dec = num.assign(price=np.array([Decimal("1.5")] * 6, dtype=object))
    np.testing.assert_array_equal(Domain(dec).X[:, 1], np.full(6, 1.5, np.float32))
    np.testing.assert_array_equal(Domain(dec.to_numpy(dtype=object)).X[:, 1], np.full(6, 1.5, np.float32))
    with pytest.raises(DataError, match=r"NaN or inf in 1 sample.*first rows: \[2\]\) in the column\(s\) \['o'\]"):
        Domain(num.assign(o=np.array([1, 2, None, 4, 5, 6], dtype=object)))
    with pytest.raises(DataError, match=r"NaN or inf in 1 sample.*first rows: \[0\]"):
        Domain(np.array([[1, None], [2, 3]], dtype=object))


def test_a_frame_is_read_as_float32_without_a_float64_copy():
    """(review diff6 #2) Every frame went through float64 first: 2.4 times the memory of an integer frame."""
    import tracemalloc

    import pandas as pd

    frame = pd.DataFrame(np.zeros((20_000, 100), np.uint8))
    size = 20_000 * 100 * 4  # the float32 result
    tracemalloc.start()
    try:
        Domain(frame)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2.6 * size, f"peak {peak / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB result"


def test_sparse_matrices_and_text_series_get_errors_that_say_what_to_give():
    """scipy.sparse input (sklearn's load_svmlight_file) was refused as 'dtype object' or 'must be numbers'; a
    pandas Series of text as 'expected a numeric array', though text is accepted as a 1-d array of str."""
    import pandas as pd
    import scipy.sparse

    from qianyi import DomainAdapter
    from qianyi.measure import distances

    X = scipy.sparse.random(30, 8, density=0.3, format="csr", random_state=0)
    with pytest.raises(DataError, match=r"domain 'domain': inputs X are a scipy.sparse matrix of shape \(30, 8\); "
                                        r"give X.toarray\(\)"):
        Domain(X)
    with pytest.raises(DataError, match=r"scipy.sparse matrix.*toarray\(\)"):
        distances(X, X, ["coral"])
    y = np.arange(30) % 2
    for kwargs in (dict(X=X, y=y, Xt=X.toarray()), dict(X=X.toarray(), y=y, Xt=X)):
        with pytest.raises(DataError, match=r"Sparse data was passed for X.*toarray\(\)"):
            DomainAdapter(epochs=1, steps_per_epoch=1).fit(**kwargs)
    texts = ["great blender", "broke in a week", "love it", "awful"]
    for given in (pd.Series(texts), texts):
        d = Domain(given, [1, 0, 1, 0])
        assert d.is_text and list(d.X) == texts
    with pytest.raises(DataError, match=r"1-d inputs are text, one str per sample \(docs/text.md\), but entry 1 "
                                        r"is nan \(a float; 1 entries are not str\): drop or fill them"):
        Domain(pd.Series(["good", None, "bad"]))


def test_prepare_reads_get_dummies_bool_columns(tmp_path):
    """README's recipe m.prepare(pd.get_dummies(df, prefix_sep='=')) gives bool columns: refused as dtype object."""
    import pandas as pd

    rng = np.random.default_rng(1)
    y = np.arange(120) % 2
    df = pd.DataFrame({"a": rng.normal(size=120) + y, "c": np.where(y == 1, "x", "z")})
    df.loc[::7, "c"] = "w"
    for name, rows in (("s", slice(0, 60)), ("t", slice(60, 120))):
        df[rows].assign(label=y[rows]).to_csv(tmp_path / f"{name}.csv", index=False)
    spec = "csv:{}?categorical=auto"
    task = qianyi.load_task(spec.format(tmp_path / "s.csv"), spec.format(tmp_path / "t.csv"))
    qianyi.run("source-only", task, FAST, out=tmp_path / "run")
    m = qianyi.load_model(tmp_path / "run")
    dummies = pd.get_dummies(df[60:], prefix_sep="=")
    assert {str(t) for t in dummies.dtypes} == {"bool", "float64"}
    np.testing.assert_array_equal(m.prepare(dummies).X, m.prepare(dummies.astype(float)).X)
    np.testing.assert_array_equal(m.prepare(dummies).X, m.prepare(spec.format(tmp_path / "t.csv")).X)
    with pytest.raises(DataError, match=r"scipy.sparse matrix.*toarray\(\)"):
        import scipy.sparse
        m.prepare(scipy.sparse.csr_matrix(dummies.to_numpy(float)))
