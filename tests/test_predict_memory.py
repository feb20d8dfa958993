"""`qianyi predict --out OUT.csv` streams its rows (review: predict memory): the same bytes as when it held every
row, no partial OUT.csv when interrupted, and memory that does not grow with a list of every formatted row."""
from __future__ import annotations

import csv
import hashlib
import json
import tracemalloc

import numpy as np
import pytest
import torch

from qianyi.cli import main

from .test_hostile import FAST

COLUMNS = ["cust", *(f"f{j}" for j in range(6)), "label"]
CLASSES = ("cat", "dog, big", 'emu "e"')  # names a CSV quotes


def _table(path, n: int, seed: int) -> None:
    """Rows of an id, six numbers (four decimals: read exactly as written) and one of three classes."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = rng.normal(0, 1, (n, 6)) + 2 * np.eye(3, 6)[y]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for i in range(n):
            w.writerow([f"u{seed}-{i}", *(f"{v:.4f}" for v in X[i]), CLASSES[y[i]]])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A CSV run whose weights are then set to fixed numbers (its predictions depend on no training draw)."""
    root = tmp_path_factory.mktemp("predictmem")
    _table(root / "s.csv", 120, 0)
    _table(root / "t.csv", 120, 1)
    out = root / "run"
    assert main(["run", "source-only", "--source", f"csv:{root / 's.csv'}?id=cust", "--target",
                 f"csv:{root / 't.csv'}?id=cust", *FAST, "--out", str(out)]) == 0
    state = torch.load(out / "model.pt", weights_only=True)
    for k, (name, t) in enumerate(state.items()):
        if t.is_floating_point():
            fixed = torch.arange(t.numel(), dtype=torch.float64).reshape(t.shape)
            state[name] = (((fixed * 7 + k * 3) % 17 - 8) / 32).to(t.dtype)  # multiples of 1/32 in [-0.25, 0.25]
            if name.endswith("running_var"):
                state[name] = torch.ones_like(t)
    torch.save(state, out / "model.pt")
    meta = json.loads((out / "model.json").read_text())
    meta["weights_sha256"] = hashlib.sha256((out / "model.pt").read_bytes()).hexdigest()
    (out / "model.json").write_text(json.dumps(meta))
    (out / "result.json").unlink()  # (it names the trained model.pt)
    _table(root / "new.csv", 2500, 2)  # three network batches of 1,024
    return out, root


#: `qianyi predict RUN --data csv:new.csv?id=cust` as the code that held every row wrote it (2,500 rows)
PINNED_SHA256 = "acf443ff98b6dbedd3bfb23f82ee4afcfd64c953466c28c3243a791f50694212"
PINNED_HEAD = ('index,cust,predicted,p_cat,"p_dog, big","p_emu ""e""",label\n'
               '0,u2-0,cat,0.736103,0.195954,0.067943,cat\n'
               '1,u2-1,cat,0.714426,0.222623,0.062951,"dog, big"\n')


def test_the_predictions_file_is_the_bytes_it_was(run, tmp_path, capsys):
    out, root = run
    target = tmp_path / "p.csv"
    assert main(["predict", str(out), "--data", f"csv:{root / 'new.csv'}?id=cust", "--out", str(target)]) == 0
    err = capsys.readouterr().err
    assert f"written: {target} (2500 predictions)" in err and "accuracy on 2500 labelled samples" in err, err
    data = target.read_bytes()
    assert data.decode().splitlines()[:3] == PINNED_HEAD.splitlines(), data[:300]
    assert hashlib.sha256(data).hexdigest() == PINNED_SHA256
    rows = list(csv.reader(data.decode().splitlines()))
    assert len(rows) == 2501 and rows[-1][0] == "2499" and rows[-1][1] == "u2-2499"
    # to stdout without --out: the same bytes
    assert main(["predict", str(out), "--data", f"csv:{root / 'new.csv'}?id=cust"]) == 0
    assert capsys.readouterr().out.encode() == data


def test_an_interrupted_prediction_leaves_no_partial_file(run, tmp_path, monkeypatch, capsys):
    import qianyi.nn.inference as inference

    out, root = run
    target = tmp_path / "p.csv"
    target.write_text("the previous predictions\n")
    real, calls = inference.forward, []

    def interrupted(model, x):
        calls.append(len(x))
        if len(calls) == 3:  # the last of three batches: two batches' rows may be formatted already
            raise KeyboardInterrupt
        return real(model, x)

    monkeypatch.setattr(inference, "forward", interrupted)
    assert main(["predict", str(out), "--data", f"csv:{root / 'new.csv'}?id=cust", "--out", str(target)]) == 130
    assert len(calls) == 3 and "interrupted" in capsys.readouterr().err
    assert target.read_text() == "the previous predictions\n"  # left as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.csv"]  # no temporary file left behind


def test_predict_holds_no_list_of_every_formatted_row(tmp_path, monkeypatch, capsys):
    """Python-side memory of predicting 40,000 rows already read: the rows go to the file as they are formatted
    (every row held as a list of strings took ~140 bytes a field: ~20 MB here)."""
    import qianyi.train.artefact as artefact

    _table(tmp_path / "s.csv", 120, 0)
    _table(tmp_path / "t.csv", 120, 1)
    _table(tmp_path / "big.csv", 40_000, 3)
    out = tmp_path / "run"
    assert main(["run", "source-only", "--source", f"csv:{tmp_path / 's.csv'}?id=cust", "--target",
                 f"csv:{tmp_path / 't.csv'}?id=cust", *FAST, "--out", str(out)]) == 0
    spec = f"csv:{tmp_path / 'big.csv'}?id=cust"
    data = artefact.load_domain_for(artefact.load_model(out), spec)
    monkeypatch.setattr(artefact, "load_domain_for", lambda *a, **k: data)  # the reading is not measured
    target = tmp_path / "p.csv"
    main(["predict", str(out), "--data", spec, "--out", str(target)])  # once untraced: imports, parser
    tracemalloc.start()
    try:
        assert main(["predict", str(out), "--data", spec, "--out", str(target)]) == 0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(target.read_text().splitlines()) == 40_001, capsys.readouterr().err
    # the inputs as the model reads them: 40,000 x 6 float32 (~1 MB), their ids and labels
    assert peak < 6 * 2**20, f"{peak / 2**20:.1f} MB"
