"""Hostile and careless input: every user mistake ends in ``qianyi: error: ...`` with exit 2, never in a
silently wrong result, a traceback, or litter. (Readers' own cases: tests/test_readers.py; fuzzing:
tests/test_fuzz.py; the catalogue with before/after: docs/robustness.md.)"""
from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from qianyi.cli import main
from qianyi.data import load_task
from qianyi.data.domain import Domain, TransferTask
from qianyi.errors import OutputError, QianyiWarning, TrainingError
from qianyi.methods.base import Method, StepContext
from qianyi.train import TrainConfig, run
from qianyi.train.store import finished

FAST = ["--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "16", "--no-progress", "--threads", "1"]


def _blobs(path, n: int = 90, d: int = 5, shift: float = 0.0, seed: int = 0, y=None, shape=None) -> str:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3 if y is None else np.asarray(y)
    X = rng.normal(0, 1, (len(y), d)) + 3 * np.eye(3, d)[y % 3] + shift
    if shape is not None:
        X = rng.random((len(y), *shape))
    np.savez(path, X=X.astype(np.float32), y=y)
    return f"npz:{path}"


@pytest.fixture
def pair(tmp_path):
    return _blobs(tmp_path / "s.npz"), _blobs(tmp_path / "t.npz", shift=0.5, seed=1)


def _cli(capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(list(args))
    return rc, capsys.readouterr().err


def _refused(capsys, args, match: str) -> None:
    rc, err = _cli(capsys, *args)
    assert rc == 2, err
    assert "qianyi: error:" in err and match in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("extra, match", [
    (["--lr", "nan"], "lr must be a finite number"),
    (["--lr", "inf"], "lr must be a finite number"),
    (["--lr", "-1"], "lr must be a finite number > 0"),
    (["--lr", "1e308"], "at most 100"),
    (["--threads", "99999999999"], "--threads must be from 1 to"),
    (["--copied-lr-mult", "nan"], "copied_lr_mult"),
    (["--set", "trade_off=nan"], "trade_off must be a finite number"),
    (["--set", "multipliers=0,1"], "numbers > 0"),
    (["--threads", "0"], "--threads must be from 1 to"),
    (["--threads", "-1"], "--threads must be from 1 to"),
    (["--device", "foo"], "not a device name"),
    (["--batch-size", "1"], "batch norm needs two samples"),
    (["--max-samples", "0"], "--max-samples"),
    (["--max-samples", "1"], "--max-samples"),
    (["--out", ""], "--out is empty"),
])
def test_bad_settings_exit_2_before_training(capsys, pair, extra, match):
    _refused(capsys, ["run", "dan", "--source", pair[0], "--target", pair[1], *FAST, *extra], match)


def test_a_seed_out_of_range_is_refused_by_the_flag(capsys, pair):
    # 2**63 was a torch overflow traceback; --seed now states the range itself (argparse's refusal, exit 2)
    with pytest.raises(SystemExit) as exc:
        main(["run", "dan", "--source", pair[0], "--target", pair[1], *FAST, "--seed", str(2**63)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--seed: must be between 0 and 4294967295" in err and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_named(capsys, pair):
    _refused(capsys, ["run", "dan", "--source", pair[0], "--target", pair[1], *FAST, "--device", "cuda"],
             "sees no CUDA device")


@pytest.mark.parametrize("method, setting, match", [
    ("dann", "hidden=0", "hidden must be a non-empty list of whole numbers from 1 to"),
    ("dann", "hidden=1000000000000000", "hidden must be a non-empty list of whole numbers from 1 to"),
    ("drcn", "noise=1.5", "noise"),
    ("ddc", "kernel=x", "kernel must be"),
    ("mcd", "num_k=0", "num_k"),
    ("mean-teacher", "decay=nan", "decay"),
])
def test_bad_method_settings_exit_2(capsys, pair, method, setting, match):
    _refused(capsys, ["run", method, "--source", pair[0], "--target", pair[1], *FAST, "--set", setting], match)


def test_degenerate_tasks_are_named(capsys, tmp_path, pair):
    src = pair[0]
    tiny = _blobs(tmp_path / "tiny.npz", n=3, seed=2)  # target: 1 train sample after the test split... or none
    for method in ("dsn", "oracle"):
        _refused(capsys, ["run", method, "--source", src, "--target", tiny, *FAST], "sample")
    one_class = _blobs(tmp_path / "one.npz", y=np.zeros(60, int))
    _refused(capsys, ["run", "dan", "--source", one_class, "--target", pair[1], *FAST], "single class")
    huge = _blobs(tmp_path / "huge.npz", y=np.r_[np.arange(59) % 3, 10**9])
    _refused(capsys, ["run", "dan", "--source", huge, "--target", pair[1], *FAST], "class indices")
    s2, t2 = _blobs(tmp_path / "s2.npz", shape=(2, 2)), _blobs(tmp_path / "t2.npz", shape=(2, 2), seed=3)
    _refused(capsys, ["run", "dan", "--source", s2, "--target", t2, *FAST], "too small for the LeNet")


def test_unknown_or_malformed_spec_options_are_refused(capsys, tmp_path, pair):
    csv = tmp_path / "t.csv"
    csv.write_text("a,b,y\n" + "".join(f"{i},{i % 3},{i % 3}\n" for i in range(30)))
    _refused(capsys, ["run", "dan", "--source", f"csv:{csv}?lable=y", "--target", f"csv:{csv}", *FAST],
             "no option 'lable'")
    for size in ("abc", "0", "-4", "100000"):
        _refused(capsys, ["run", "dan", "--source", f"folder:{tmp_path}?size={size}", "--target", pair[1], *FAST],
                 f"?size={size}")


def test_unusable_out_is_refused_before_anything_trains(capsys, tmp_path, pair, monkeypatch):
    from qianyi.train import engine

    monkeypatch.setattr(engine.Trainer, "fit", lambda *a, **k: pytest.fail("trained with an unusable --out"))
    afile = tmp_path / "file"
    afile.write_text("x")
    base = ["run", "dan", "--source", pair[0], "--target", pair[1], *FAST]
    _refused(capsys, [*base, "--out", str(afile)], "is a file, not a folder")
    _refused(capsys, [*base, "--out", str(afile / "sub")], "a part of that path is a file")
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        _refused(capsys, [*base, "--out", str(ro / "run")], "cannot be created")


_HOLDER = """
import sys
from qianyi.train.rundir import hold
with hold(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_a_second_process_on_the_same_out_is_refused(capsys, tmp_path, pair):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        _refused(capsys, ["run", "dan", "--source", pair[0], "--target", pair[1], *FAST, "--out", str(out)],
                 "in use by another qianyi process")
        assert not (out / "result.json").exists()
    finally:
        holder.communicate("\n", timeout=30)
    rc, err = _cli(capsys, "run", "dan", "--source", pair[0], "--target", pair[1], *FAST, "--out", str(out))
    assert rc == 0, err  # released when the holder ended


def test_stale_temporary_files_are_removed_on_the_next_start(capsys, tmp_path, pair):
    out = tmp_path / "run"
    out.mkdir()
    stale = [out / ".checkpoint.pt.ab_12xyz.tmp", out / ".result.json.k9j2m4q0.tmp"]  # atomic_write's names
    for p in stale:
        p.write_bytes(b"half a checkpoint")
    mine = out / ".user-notes.tmp"  # not qianyi's: it was deleted too
    mine.write_text("keep me")
    rc, err = _cli(capsys, "run", "dan", "--source", pair[0], "--target", pair[1], *FAST, "--out", str(out))
    assert rc == 0, err
    assert not any(p.exists() for p in stale) and mine.read_text() == "keep me"
    assert [p for p in out.iterdir() if p.name.endswith(".tmp")] == [mine]


def test_the_finished_state_names_its_model_file(tmp_path, pair):
    task = load_task(*pair)
    cfg = TrainConfig(epochs=1, steps_per_epoch=2, batch_size=16, progress=False)
    res, _ = run("dan", task, cfg, out=tmp_path / "r")
    assert finished(tmp_path / "r", res.fingerprint) is not None
    other, _ = run("dan", task, cfg.__class__(**{**cfg.__dict__, "seed": 1}), out=tmp_path / "other")
    (tmp_path / "r" / "model.pt").write_bytes((tmp_path / "other" / "model.pt").read_bytes())
    assert finished(tmp_path / "r", res.fingerprint) is None  # a model.pt from another run: not finished


class _Diverges(Method):
    """Trains normally, then a weight becomes NaN after the last update (the loss itself stayed finite)."""

    name = "diverges-test"

    def training_step(self, ctx: StepContext) -> None:
        super().training_step(ctx)
        with torch.no_grad():
            ctx.model.groups["fc2"][0].weight[0, 0] = float("nan")

    def loss(self, batch):
        return {"cls": self.source_ce(batch)}


def test_non_finite_weights_are_refused_not_scored(tmp_path, pair):
    # (it promised "the last checkpoint is kept" where none was written, and a lower --lr refuses the old one)
    with pytest.raises(TrainingError, match="weight 'groups.fc2.0.weight' became NaN.*that is another run, so give "
                                            "a new --out"):
        run(_Diverges(), load_task(*pair), TrainConfig(epochs=1, steps_per_epoch=1, batch_size=16, progress=False),
            out=tmp_path / "r")
    assert not (tmp_path / "r" / "result.json").exists()


def test_a_domain_smaller_than_a_batch_says_the_batches_are_unequal(tmp_path):
    # 21 target samples against batches of 64: each step took all 21, and domain_acc's chance level moved to 75%
    src, tgt = _blobs(tmp_path / "s.npz", n=200), _blobs(tmp_path / "t.npz", n=30, shift=1.0, seed=3)
    task = load_task(src, tgt)
    with pytest.warns(QianyiWarning, match=r"the target has 21 training samples, fewer than --batch-size 64.*"
                                           r"chance level is 75%.*--batch-size 21 gives equal batches"):
        run("dann", task, TrainConfig(epochs=1, steps_per_epoch=1, progress=False))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # equal batches, or a method that reads no target: nothing to say
        run("dann", task, TrainConfig(epochs=1, steps_per_epoch=1, batch_size=21, progress=False))
        run("source-only", task, TrainConfig(epochs=1, steps_per_epoch=1, progress=False))


def test_a_full_disk_is_a_named_error_and_keeps_the_last_checkpoint(tmp_path, pair, monkeypatch):
    task = load_task(*pair)
    cfg = TrainConfig(epochs=2, steps_per_epoch=2, batch_size=16, progress=False)
    run("dan", task, TrainConfig(epochs=1, steps_per_epoch=2, batch_size=16, progress=False, keep_checkpoint=True),
        out=tmp_path / "r")
    before = (tmp_path / "r" / "checkpoint.pt").read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OutputError, match="No space left on device.*free some disk space"):
        run("dan", task, cfg, out=tmp_path / "r2")
    assert not [p for p in (tmp_path / "r2").iterdir() if p.name.endswith(".tmp")]
    assert (tmp_path / "r" / "checkpoint.pt").read_bytes() == before


class Evil:
    """A pickled object, which weights_only loading refuses."""


def test_a_corrupt_checkpoint_never_advises_unsafe_loading(capsys, tmp_path, pair):
    out = tmp_path / "run"
    out.mkdir()

    for blob in (os.urandom(300), None):
        if blob is None:
            torch.save({"format": 2, "x": Evil()}, out / "checkpoint.pt")
        else:
            (out / "checkpoint.pt").write_bytes(blob)
        rc, err = _cli(capsys, "run", "dan", "--source", pair[0], "--target", pair[1], *FAST, "--out", str(out))
        assert rc == 2 and "checkpoint" in err and "Delete it" in err, err
        assert "weights_only=False" not in err and "Traceback" not in err


def test_a_tiny_target_test_split_warns(tmp_path):
    rng = np.random.default_rng(0)
    s = Domain(rng.normal(size=(60, 4)), np.arange(60) % 3, "s")
    t = Domain(rng.normal(size=(9, 4)), np.arange(9) % 3, "t")
    with pytest.warns(QianyiWarning, match="only 3 sample"):
        TransferTask.from_domains(s, t)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TransferTask.from_domains(s, Domain(rng.normal(size=(90, 4)), np.arange(90) % 3, "t"))


def test_domains_whose_files_share_a_stem_are_two_domains(tmp_path):
    (tmp_path / "amazon").mkdir()
    (tmp_path / "webcam").mkdir()
    a = _blobs(tmp_path / "amazon" / "images.npz")
    w = _blobs(tmp_path / "webcam" / "images.npz", shift=1.0, seed=5)
    task = load_task(a, w)
    assert len(task.source) + len(task.source_val) == 90  # not cut in half as one pool
    assert len(task.target) + len(task.target_test) == 90
    w2 = _blobs(tmp_path / "webcam" / "images.npz", n=60, shift=1.0, seed=5)
    task = load_task(a, w2)  # different sizes: no "share the origin" error
    assert len(task.target) + len(task.target_test) == 60
    same = load_task(a, a)  # one file on both sides: one pool, disjoint halves
    assert len(same.source) + len(same.source_val) == 45


def test_csv_columns_are_matched_by_name(tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(120) % 3
    big = 100 * y + rng.normal(0, 1, 120)  # the informative column, on a large scale
    noise = rng.normal(0, 1, 120)
    (tmp_path / "s.csv").write_text("big,noise,label\n" + "".join(f"{b},{n},{c}\n" for b, n, c in zip(big, noise, y)))
    other = rng.normal(0, 1, 120)  # the target's own samples (the same ones would be refused as seen in training)
    (tmp_path / "t.csv").write_text("noise,label,big\n" + "".join(f"{n},{c},{b}\n" for b, n, c in zip(big, other, y)))
    task = load_task(f"csv:{tmp_path / 's.csv'}", f"csv:{tmp_path / 't.csv'}")
    assert task.target.feature_names == ("big", "noise")
    assert abs(np.corrcoef(task.target.X[:, 0], task.target.y)[0, 1]) > 0.9  # 'big' (the label's) comes first
    (tmp_path / "u.csv").write_text("other,noise,label\n1,2,0\n")
    with pytest.raises(Exception, match="different feature columns"):
        load_task(f"csv:{tmp_path / 's.csv'}", f"csv:{tmp_path / 'u.csv'}")


def test_result_json_is_written_after_the_model(tmp_path, pair):
    task = load_task(*pair)
    res, _ = run("dan", task, TrainConfig(epochs=1, steps_per_epoch=2, batch_size=16, progress=False),
                 out=tmp_path / "r")
    saved = json.loads((tmp_path / "r" / "result.json").read_text())
    from qianyi._io import sha256_file

    assert saved["model_sha256"] == sha256_file(tmp_path / "r" / "model.pt")


def test_a_bug_keeps_its_traceback(monkeypatch, pair):
    """Only user mistakes become exit 2; anything else is a bug and must surface as itself."""
    from qianyi.train import engine

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(engine.Trainer, "fit", broken)
    with pytest.raises(ZeroDivisionError):
        main(["run", "dan", "--source", pair[0], "--target", pair[1], *FAST])



#: Shapes of the default networks (sample shape, classes, sparse counts) and the generation they belong
#: to (DEFAULT_BACKBONE_VERSION, per kind of input). A change of shapes must bump the kind's generation.
#: Sparse counts, generation 2: vector_mlp (generation 1 was mlp's defaults, as dense vectors still are).
DEFAULT_NETWORKS = {((1, 28, 28), 10, False): (1, "a2d8b3c8977c"), ((3, 32, 32), 31, False): (1, "54e426c95ede"),
                    ((1, 8, 8), 10, False): (1, "aa78c6af75b8"), ((5000,), 2, False): (1, "36231dc19893"),
                    ((800,), 10, False): (1, "434539d4e846"), ((5000,), 2, True): (2, "8ddcf8f547f6"),
                    ((800,), 10, True): (2, "dabd28dac276")}


def test_a_changed_default_network_is_never_mistaken_for_the_stored_one():
    """Stored runs are found by fingerprint; the default networks' generation is part of it."""
    import hashlib

    from qianyi.nn.backbones import backbone_for, default_network_generation

    def signature(shape, k, counts):
        shapes = [(n, list(t.shape)) for n, t in backbone_for(shape, k, counts=counts).state_dict().items()]
        return hashlib.sha256(json.dumps(shapes).encode()).hexdigest()[:12]

    changed = {key for key, (generation, sig) in DEFAULT_NETWORKS.items()
               if signature(*key) != sig and default_network_generation(key[0], key[2]) <= generation}
    assert not changed, (
        f"the default networks changed for {sorted(changed)}: bump DEFAULT_BACKBONE_VERSION in "
        "qianyi/nn/backbones.py (and record the new shapes here)")


def test_the_default_networks_generation_is_in_the_fingerprint(monkeypatch, pair):
    from qianyi.methods import get_method
    from qianyi.train import engine, store

    task = load_task(*pair)
    trainer = engine.Trainer(get_method("dan"), TrainConfig(epochs=1))
    from qianyi.nn import backbones

    monkeypatch.setattr(backbones, "DEFAULT_BACKBONE_VERSION", {"images": 1, "vectors": 1, "counts": 1})
    assert "backbone" not in trainer.fingerprint(task)  # generation 1: runs stored before it keep their keys
    monkeypatch.setattr(backbones, "DEFAULT_BACKBONE_VERSION", {"images": 3, "vectors": 3, "counts": 3})
    assert trainer.fingerprint(task)["backbone"] == "default-v3"
    # what a store looks up (bench, select, measure) is what the run records
    assert store.fingerprint(get_method("dan"), TrainConfig(epochs=1), task) == trainer.fingerprint(task)


def test_a_lock_left_by_the_workers_of_a_killed_run_says_to_rerun(tmp_path):
    # the loader workers of a SIGKILLed streamed run hold the lock a few seconds; the message named the dead pid
    # as "another qianyi process"
    import fcntl

    from qianyi.errors import OutputError
    from qianyi.train import rundir as R
    from qianyi.train.rundir import LOCK_FILE, hold

    out = tmp_path / "run"
    out.mkdir()
    fh = open(out / LOCK_FILE, "a+")
    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    fh.write("pid 999999999\n")
    fh.flush()
    try:
        with pytest.raises(OutputError, match="data-loader workers of a qianyi process that ended"):
            with hold(out):
                pass
        # a holder on another host or in another container (pid namespace) cannot be seen from here: in use, not
        # "ended, run again" (said on every retry while it trained)
        for elsewhere in ("pid 999999999 on another-host pid:[1]", "pid 999999999 on " + R._HOST + " pid:[1]"):
            fh.seek(0)
            fh.truncate()
            fh.write(elsewhere + "\n")
            fh.flush()
            with pytest.raises(OutputError, match="in use by another qianyi process"):
                with hold(out):
                    pass
    finally:
        fh.close()
    with hold(out):  # written by this process: pid, host and namespace
        assert re.fullmatch(rf"pid {os.getpid()} on {re.escape(R._HOST)} \S+\n", (out / LOCK_FILE).read_text())


def test_a_linked_lock_file_is_refused_and_its_target_untouched(tmp_path):
    # a run folder copied from elsewhere with .lock -> a user's file: taking the lock truncated and overwrote it
    from qianyi.errors import OutputError
    from qianyi.train.rundir import LOCK_FILE, hold

    victim = tmp_path / "notes.txt"
    victim.write_text("my notes\n")
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_FILE).symlink_to(victim)
    with pytest.raises(OutputError, match="not a plain file.*remove it"):
        with hold(out):
            pass
    assert victim.read_text() == "my notes\n"
    os.mkfifo(out / "fifo")
    (out / LOCK_FILE).unlink()
    os.rename(out / "fifo", out / LOCK_FILE)  # a FIFO made open() block for ever
    with pytest.raises(OutputError, match="not a plain file"):
        with hold(out):
            pass


def test_a_file_system_without_locks_is_named_and_the_run_goes_on(tmp_path, monkeypatch):
    import fcntl

    from qianyi.train.rundir import hold

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")
    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.warns(QianyiWarning, match="does not support file locks.*local disk"):
        with hold(tmp_path / "nfs"):
            pass


def test_settings_are_checked_before_any_data_is_read(capsys, tmp_path):
    # --lr nan with a missing source reported the data error only (settings were checked after loading)
    rc, err = _cli(capsys, "run", "dann", "--source", f"npz:{tmp_path / 'missing.npz'}", "--target", "digits",
                   "--lr", "nan")
    assert rc == 2 and "lr must be a finite number" in err
