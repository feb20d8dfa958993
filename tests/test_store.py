"""One run store: finished runs are found by their full fingerprint, data content included."""
from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from qianyi.bench import bench
from qianyi.errors import CheckpointError
from qianyi.train import TrainConfig, run
from qianyi.data import load_task
from qianyi.train.store import RunStore, fingerprint, slug
from qianyi.methods import get_method

FAST = TrainConfig(epochs=1, steps_per_epoch=4, batch_size=16, progress=False)


def _blobs(path, seed: int, shift: float = 0.0) -> None:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), 40)
    X = rng.normal(0, 1, (120, 5)) + 3 * np.eye(3, 5)[y] + shift
    np.savez(path, X=X.astype(np.float32), y=y)


def _result_dirs(root):
    return sorted(p.parent for p in (root / "runs").rglob("result.json"))


def test_a_changed_data_file_under_the_same_spec_is_not_reused(tmp_path):
    pair = _blob_pair(tmp_path)
    src, tgt = tmp_path / "s.npz", tmp_path / "t.npz"
    logs: list[str] = []
    bench(["dan"], [pair], seeds=1, out=tmp_path / "b", config=FAST, log=logs.append)
    first = _result_dirs(tmp_path / "b")
    logs.clear()
    bench(["dan"], [pair], seeds=1, out=tmp_path / "b", config=FAST, log=logs.append)
    assert all("(done earlier)" in line for line in logs if "seed" in line)  # unchanged: reused
    _blobs(tgt, 2, shift=2.0)  # same spec, other content
    logs.clear()
    bench(["dan"], [pair], seeds=1, out=tmp_path / "b", config=FAST, log=logs.append)
    assert not any("(done earlier)" in line for line in logs)
    assert len(_result_dirs(tmp_path / "b")) == 2 * len(first)
    # a single run in the same folder refuses to resume a checkpoint of other data
    task = load_task(f"npz:{src}", f"npz:{tgt}")
    out = tmp_path / "one"
    run("dan", task, FAST, out=out)
    _blobs(tgt, 3, shift=1.0)
    with pytest.raises(CheckpointError, match="data"):
        run("dan", load_task(f"npz:{src}", f"npz:{tgt}"), FAST, out=out)


def test_pairs_whose_names_slug_alike_never_share_runs(tmp_path):
    a, b, t = tmp_path / "a b.npz", tmp_path / "a_b.npz", tmp_path / "t.npz"
    _blobs(a, 0)
    _blobs(b, 4, shift=1.0)
    _blobs(t, 1, shift=0.5)
    assert slug("a b") == slug("a_b")
    res = bench(["dan"], [f"npz:{a}->npz:{t}", f"npz:{b}->npz:{t}"], seeds=1, out=tmp_path / "b", config=FAST,
                log=None)
    dirs = _result_dirs(tmp_path / "b")
    assert len(dirs) == 6 == len(set(dirs))  # 3 methods x 2 pairs, each in its own folder
    assert {r.source for r in res.runs} == {f"npz:{a}", f"npz:{b}"}


def test_fingerprint_covers_method_settings_config_and_data(tmp_path):
    src, tgt = tmp_path / "s.npz", tmp_path / "t.npz"
    _blobs(src, 0)
    _blobs(tgt, 1)
    task = load_task(f"npz:{src}", f"npz:{tgt}")
    store = RunStore(tmp_path)
    fp = fingerprint(get_method("dan"), FAST, task)
    others = [fingerprint(get_method("dan", trade_off=1.0), FAST, task),
              fingerprint(get_method("dann"), FAST, task),
              fingerprint(get_method("dan"), replace(FAST, seed=1), task),
              fingerprint(get_method("dan"), replace(FAST, lr=0.02), task)]
    assert len({store.path(f) for f in [fp, *others]}) == 5
    assert store.get(fp) is None
    run("dan", task, FAST, out=store.path(fp))
    assert store.get(fp) is not None and store.get(others[0]) is None


def test_configs_are_frozen_and_replace_validates():
    with pytest.raises(Exception):
        FAST.epochs = 3  # type: ignore[misc]
    with pytest.raises(Exception, match="lr"):
        replace(FAST, lr=float("nan"))
    with pytest.raises(Exception, match="select"):
        replace(FAST, select="nope")


def test_a_starting_model_counts_by_its_content_not_its_path(tmp_path):
    import shutil

    src, tgt = tmp_path / "s.npz", tmp_path / "t.npz"
    _blobs(src, 0)
    _blobs(tgt, 1)
    task = load_task(f"npz:{src}", f"npz:{tgt}")
    run("source-only", task, FAST, out=tmp_path / "a")
    run("source-only", task, replace(FAST, seed=1), out=tmp_path / "b")
    shutil.copy(tmp_path / "a" / "model.pt", tmp_path / "start.pt")
    fp = fingerprint(get_method("dan"), replace(FAST, init_from=str(tmp_path / "start.pt")), task)
    moved = tmp_path / "elsewhere" / "start.pt"
    moved.parent.mkdir()
    shutil.copy(tmp_path / "start.pt", moved)  # the same model at another path: the same run
    assert fingerprint(get_method("dan"), replace(FAST, init_from=str(moved)), task) == fp
    shutil.copy(tmp_path / "b" / "model.pt", tmp_path / "start.pt")  # another model at the same path: another run
    assert fingerprint(get_method("dan"), replace(FAST, init_from=str(tmp_path / "start.pt")), task) != fp


def test_a_method_revision_and_the_l2sp_form_are_part_of_the_fingerprint():
    # a loss renormalised under the same settings must not reuse a stored run of the earlier form
    task = load_task("digits", "digits+rot30", max_samples=100)
    fp = fingerprint(get_method("mean-teacher"), TrainConfig(), task)
    assert fp["revision"] == 2
    assert "revision" not in fingerprint(get_method("dann"), TrainConfig(), task)  # revision 1: old keys kept
    assert TrainConfig(init_from="m.pt", l2sp=0.01).fingerprint()["l2sp_form"] == 2
    assert "l2sp_form" not in TrainConfig().fingerprint()


def _blob_pair(root) -> str:
    """Two small npz domains in ``root``, as a bench pair 'npz:S->npz:T'."""
    src, tgt = root / "s.npz", root / "t.npz"
    _blobs(src, 0)
    _blobs(tgt, 1, shift=0.5)
    return f"npz:{src}->npz:{tgt}"


def test_a_reused_run_made_by_other_code_is_named_once(tmp_path, monkeypatch):
    # the store finds finished runs by settings and data; code that changed since is told, not silent
    import json
    import warnings

    from qianyi.errors import QianyiWarning
    from qianyi.train import store

    pair = _blob_pair(tmp_path)
    bench(["dan"], [pair], seeds=1, out=tmp_path / "b", config=FAST, log=None)
    made = [json.loads((d / "result.json").read_text()) for d in _result_dirs(tmp_path / "b")]
    assert {r["versions"]["code"] for r in made} == {store.code_digest()}
    monkeypatch.setattr(store, "_WARNED_OTHER_CODE", [])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bench(["dan"], [pair], seeds=1, out=tmp_path / "b", config=FAST, log=None)  # same code: silent
    assert not [w for w in caught if issubclass(w.category, QianyiWarning) and "other code" in str(w.message)]
    store._package_digest.cache_clear()
    monkeypatch.setattr(store, "code_digest", lambda *method: "0123456789ab")
    logs: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bench(["dan"], [pair], seeds=1, out=tmp_path / "b", config=FAST, log=logs.append)
    other = [str(w.message) for w in caught if issubclass(w.category, QianyiWarning) and "other code" in str(w.message)]
    assert len(other) == 1 and "0123456789ab" in other[0] and made[0]["versions"]["code"] in other[0]
    assert all("(done earlier)" in line for line in logs if "seed" in line)  # still reused: told, not retrained
    assert "versions of qianyi's code" not in (tmp_path / "b" / "results.md").read_text()
    # a table of runs by two codes says so, with the count of each
    import sys

    monkeypatch.setattr(sys.modules["qianyi.train.run"], "code_digest", lambda *method: "0123456789ab")
    mixed = bench(["dan", "coral"], [pair], seeds=1, out=tmp_path / "b", config=FAST, log=None)
    assert "Runs made by 2 versions of qianyi's code: " in mixed.report() and "0123456789ab (1 run)" in mixed.report()


def test_resuming_a_checkpoint_of_other_code_is_named(tmp_path, monkeypatch):
    from qianyi.errors import QianyiWarning
    from qianyi.train import engine
    from qianyi.train.checkpoint import FILENAME, load_checkpoint

    src, tgt = tmp_path / "s.npz", tmp_path / "t.npz"
    _blobs(src, 0)
    _blobs(tgt, 1, shift=0.5)
    task = load_task(f"npz:{src}", f"npz:{tgt}")
    cfg = replace(FAST, epochs=2, checkpoint_every=4, checkpoint_dir=str(tmp_path / "ck"))
    engine.Trainer(get_method("dan"), cfg).fit(task)  # its checkpoint stays (the engine's caller removes it)
    assert load_checkpoint(tmp_path / "ck" / FILENAME)["code"] == engine.code_digest()
    monkeypatch.setattr(engine, "code_digest", lambda *method: "0123456789ab")
    monkeypatch.setattr(engine.store, "_WARNED_OTHER_CODE", [])
    with pytest.warns(QianyiWarning, match="checkpointed by other qianyi code"):
        engine.Trainer(get_method("dan"), cfg).fit(task)
    import warnings

    with warnings.catch_warnings(record=True) as caught:  # once per process: not again at the next checkpoint
        warnings.simplefilter("always")
        engine.Trainer(get_method("dan"), cfg).fit(task)
    assert not [w for w in caught if "other qianyi code" in str(w.message)]


def test_a_stored_run_another_process_trains_is_said_with_what_to_do(tmp_path):
    """Two benches of one pair share source-only and the oracle: the second stopped with "choose another --out"
    about an internal run folder, which would train the shared runs again elsewhere."""
    import pytest

    from qianyi.errors import OutputError
    from qianyi.train.store import shared_run

    import os

    from qianyi.train import rundir as R

    rdir = tmp_path / "store (copy)" / "a-_b" / "source-only" / "seed0-abc"  # parentheses in the path
    rdir.mkdir(parents=True)
    held = R._lock(rdir, "--out")  # another open file's lock: what a second process sees
    held.seek(0)  # as written by another live process of this host (this one's own pid is said otherwise)
    held.truncate()
    held.write(f"pid {os.getppid()} on {R._HOST} {R._pid_namespace()}\n")
    held.flush()
    try:
        with pytest.raises(OutputError, match=rf"stored run .*seed0-abc' is being trained by another qianyi process "
                                              rf"\(pid {os.getppid()} on {re.escape(R._HOST)}\).*after that one finishes \(finished runs are reused"):
            with shared_run(rdir):
                R._lock(rdir, "--out")
    finally:
        held.close()
    with pytest.raises(OutputError, match="cannot create its lock file"):  # other output errors pass unchanged
        with shared_run(rdir):
            raise OutputError("--out 'x': cannot create its lock file (Permission denied); choose another --out")


def test_networks_of_your_own_are_told_apart_by_architecture_and_given_weights(tmp_path):
    """All custom networks shared the key 'custom': a bench reused another network's runs and a run resumed
    a ReLU network's checkpoint into a Tanh one."""
    import copy

    import torch
    from torch import nn

    from qianyi.nn import as_backbone
    from qianyi.train.run import run_fingerprint

    def net(width: int, act=nn.ReLU):
        return lambda shape, k: as_backbone(nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(shape)), width), act(),
                                                          nn.Linear(width, k)))
    task = load_task("digits", "digits+rot30", max_samples=60)
    m, cfg = get_method("dann"), TrainConfig(epochs=1, steps_per_epoch=2, progress=False)
    key = lambda b: run_fingerprint(m, cfg, task, b)["backbone"]  # noqa: E731
    assert key(net(32)) == key(net(32)) and key(net(32)) != key(net(16)) != key(net(16, nn.Tanh))
    assert key(net(16)) != key(net(16, nn.Tanh))
    torch.manual_seed(0)
    a = net(32)((1, 8, 8), 10)
    before = torch.get_rng_state()
    assert key(a) == key(a) and "weights" in key(a) and key(net(32)) != key(a)
    b = copy.deepcopy(a)  # the same network, other weights
    with torch.no_grad():
        b.groups["logits"].weight.add_(1.0)
    assert key(a)["architecture"] == key(b)["architecture"] and key(a)["weights"] != key(b)["weights"]
    assert torch.equal(torch.get_rng_state(), before)  # building a network to key it draws nothing of yours
    cfg_out = TrainConfig(epochs=1, steps_per_epoch=2, progress=False)
    first = bench(["dann"], ["digits->digits+rot30@60"], seeds=1, out=tmp_path, config=cfg_out, backbone=net(32),
                  log=None)
    again = bench(["dann"], ["digits->digits+rot30@60"], seeds=1, out=tmp_path, config=cfg_out, backbone=net(16),
                  log=None)  # another network: trained, not the width-32 runs reused
    assert len(list(tmp_path.rglob("result.json"))) == 6 and first.runs[1].fingerprint != again.runs[1].fingerprint


def test_an_edited_plugin_method_is_other_code(tmp_path, monkeypatch):
    """A method defined outside qianyi (a plugin, a script): its file is in the code digest, so reusing or
    resuming its runs after an edit warns as an edited qianyi would."""
    import importlib
    import json
    import sys
    import warnings

    from qianyi.errors import QianyiWarning
    from qianyi.methods import registry
    from qianyi.train import store

    (tmp_path / "qy_edited_plugin.py").write_text(
        "from qianyi.methods import Method, register\n\n"
        "@register\nclass Edited(Method):\n    name = 'qy-edited'\n\n"
        "    def loss(self, batch):\n        return {'cls': self.source_ce(batch)}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.available_methods()  # the built-ins loaded first: the copy below holds them
    monkeypatch.setattr(registry, "METHODS", dict(registry.METHODS))
    module = importlib.import_module("qy_edited_plugin")
    base = store.code_digest()
    first = store.code_digest("qy-edited")
    assert first.startswith(base + "+") and store.code_digest("dan") == base
    pair = _blob_pair(tmp_path)
    bench(["qy-edited"], [pair], seeds=1, out=tmp_path / "b", config=FAST, log=None)
    made = [json.loads((d / "result.json").read_text()) for d in _result_dirs(tmp_path / "b")]
    assert first in {r["versions"]["code"] for r in made}
    with open(module.__file__, "a") as f:
        f.write("# the loss changed\n")
    assert store.code_digest("qy-edited") != first
    monkeypatch.setattr(store, "_WARNED_OTHER_CODE", [])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bench(["qy-edited"], [pair], seeds=1, out=tmp_path / "b", config=FAST, log=None)
    assert [w for w in caught if issubclass(w.category, QianyiWarning) and "other code" in str(w.message)]
    sys.modules.pop("qy_edited_plugin", None)


def test_a_digest_from_before_notebook_methods_were_hashed_is_an_upgrade_not_an_edit(monkeypatch):
    # after an upgrade, every reused run of an unchanged notebook method was named "not the edited method's":
    # the older digest had no ``+`` part at all
    import warnings
    from types import SimpleNamespace

    from qianyi.errors import QianyiWarning
    from qianyi.train import store

    monkeypatch.setattr(store, "code_digest", lambda *method: "new000000000+f09087c5")

    def said(*made: str) -> list[str]:
        monkeypatch.setattr(store, "_WARNED_OTHER_CODE", [])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for i, code in enumerate(made):
                store.note_other_code(SimpleNamespace(method="mine", versions={"code": code}), f"runs/p/mine/seed{i}-k")
        return [str(w.message) for w in caught if issubclass(w.category, QianyiWarning)]

    upgraded = said("old000000000", "old000000000")  # one warning for the upgrade, not one per run
    assert len(upgraded) == 1 and "reusing finished runs made by other code" in upgraded[0], upgraded
    assert "did not cover the own code of a method defined outside a file" in upgraded[0]
    assert "edited method" not in upgraded[0]
    edited = said("new000000000", "old000000000+aaaaaaaa", "old000000000+aaaaaaaa")  # its own code changed
    assert len(edited) == 3 and all("not the edited method's" in m for m in edited), edited


def test_a_table_names_runs_partly_trained_by_other_code(tmp_path):
    # a run resumed under other code records both digests (versions.codes), but tables counted it by the code
    # that finished it and said nothing
    import json

    from qianyi.bench.runner import BenchResult

    pair = _blob_pair(tmp_path)
    bench(["dan"], [pair], seeds=1, out=tmp_path / "b", config=FAST, log=None)
    assert "partly trained by other code" not in (tmp_path / "b" / "results.md").read_text()
    resumed = next(d for d in _result_dirs(tmp_path / "b") if "/dan/" in d.as_posix())
    data = json.loads((resumed / "result.json").read_text())
    data["versions"]["codes"] = ["0ldc0de0ldc0", data["versions"]["code"]]
    (resumed / "result.json").write_text(json.dumps(data))
    table = BenchResult.from_bench(tmp_path / "b").table()
    assert f"1 run partly trained by other code (resumed from a checkpoint of other code; versions.codes in its " \
           f"result.json lists each): dan {data['source']}->{data['target']} seed 0." in table, table
    assert "versions of qianyi's code" not in table  # every run was finished by this code
    data["versions"]["codes"] = [data["versions"]["code"], data["versions"]["code"]]  # one digest: not mixed
    (resumed / "result.json").write_text(json.dumps(data))
    assert "partly trained" not in BenchResult.from_bench(tmp_path / "b").table()


def test_a_pair_of_long_specs_gets_a_short_folder_and_an_older_long_folder_is_still_reused(tmp_path):
    # (review port #1) the pair folder was the slug of both whole specs, paths and options: 250+ characters, so a
    # filtered pair under a longer data directory failed with "File name too long" ("choose another --out")
    from qianyi.train.store import FOLDER_NAME_MAX, named_folder

    deep = tmp_path / ("d" * 100) / ("e" * 100)
    deep.mkdir(parents=True)
    src, tgt = deep / "source.npz", deep / "target.npz"
    _blobs(src, 0)
    _blobs(tgt, 1, shift=0.5)
    pair = f"npz:{src}?name={'s' * 40}->npz:{tgt}?name={'t' * 40}"
    res = bench(["source-only"], [pair], seeds=1, out=tmp_path / "b", config=FAST, log=None, embed=False)
    folders = {p.name for p in (tmp_path / "b" / "runs").iterdir()}
    assert len(folders) == 1 and all(len(f) <= FOLDER_NAME_MAX for f in folders), folders
    assert len(res.runs) == 2  # source-only and the oracle, trained
    # two long names that share their first 67 characters still get folders of their own
    assert named_folder(tmp_path, "x" * 90 + "a") != named_folder(tmp_path, "x" * 90 + "b")
    # a folder an earlier qianyi made under the uncut name (short enough for the file system) is kept
    legacy = tmp_path / "old" / slug("y" * 120)
    legacy.mkdir(parents=True)
    assert named_folder(tmp_path / "old", "y" * 120) == legacy
    assert named_folder(tmp_path / "new", "y" * 120).name.startswith("y" * 60)
    # (review diff8 #1) the transferability protocol's COND-from-A folders too: an earlier version's is kept
    from qianyi.train.store import kept_folder, short_slug

    long = "z" * 100
    assert kept_folder(tmp_path / "t", f"AnB-from-{slug(long)}", f"AnB-from-{short_slug(long)}").name == \
        f"AnB-from-{short_slug(long)}"
    (tmp_path / "t" / f"AnB-from-{slug(long)}").mkdir(parents=True)
    assert kept_folder(tmp_path / "t", f"AnB-from-{slug(long)}", f"AnB-from-{short_slug(long)}").name == \
        f"AnB-from-{slug(long)}"


def test_an_out_folder_name_too_long_for_the_file_system_is_said(tmp_path):
    # (review diff8 #4) check_out's exists() raised ENAMETOOLONG itself: a traceback for an existing parent
    from qianyi.errors import OutputError
    from qianyi.train.rundir import check_out

    with pytest.raises(OutputError, match="longer than this file system allows; choose a shorter --out"):
        check_out(tmp_path / ("x" * 300))
