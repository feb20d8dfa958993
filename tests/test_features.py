"""`qianyi features`: a backbone's layer outputs, batch by batch, as an npz that npz:FILE reads as vectors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from qianyi.cli import main
from qianyi.data import Domain, load_domain
from qianyi.errors import ConfigError, QianyiWarning, UnknownNameError
from qianyi.nn.features import extract, save_features
from qianyi.nn.resnet import resnet

from .test_resnet import image_npz, torchvision_state


@pytest.fixture(scope="module")
def weights18(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "resnet18-test.pth"
    torch.save(torchvision_state(18), path)
    return path


def images(n: int = 10, size: int = 16) -> Domain:
    rng = np.random.default_rng(0)
    return Domain(rng.random((n, 3, size, size)).astype(np.float32), np.arange(n) % 2, "imgs", class_names=("x", "o"))


def test_extract_pool_features_and_read_them_back(tmp_path, weights18):
    d = images()
    feats = extract(d, "resnet18", layer="pool", batch_size=4, weights=weights18, progress=False)
    assert feats["X"].shape == (10, 512) and feats["X"].dtype == np.float32
    assert feats["y"].tolist() == d.y.tolist() and feats["class_names"] == ("x", "o")
    net = resnet(18, 2, weights=weights18).eval()
    with torch.no_grad():  # eval mode, the same as one forward of all samples
        assert np.allclose(feats["X"], net(torch.from_numpy(d.X))["pool"].numpy(), atol=1e-5)
    save_features(tmp_path / "f.npz", feats)
    back = load_domain(f"npz:{tmp_path / 'f.npz'}")
    assert back.sample_shape == (512,) and back.y.tolist() == d.y.tolist() and back.class_names == ("x", "o")
    assert np.allclose(back.X, feats["X"])
    # no layer named: ImageNet's pool features, as `qianyi features` gives (was the new, untrained bottleneck)
    assert np.array_equal(extract(d, "resnet18", batch_size=4, weights=weights18, progress=False)["X"], feats["X"])


def test_inputs_are_read_in_slices_of_one_batch(weights18):
    class Recording(np.ndarray):
        slices: list = []

        def __getitem__(self, item):
            Recording.slices.append(item)
            return np.asarray(self).__getitem__(item)

    d = images(n=10)
    object.__setattr__(d, "X", d.X.view(Recording))  # what a lazily loaded X would see
    extract(d, "resnet18", batch_size=4, weights=weights18, progress=False)
    assert Recording.slices == [slice(0, 4), slice(4, 8), slice(8, 12)]


def test_layers_sizes_networks_and_warnings(weights18):
    d = images(n=3)
    with pytest.warns(QianyiWarning, match="random"):
        f = extract(d, "resnet18", layer="features", progress=False)
    assert f["X"].shape == (3, 256)
    f = extract(d, "resnet18", layer="stem", size=24, weights=weights18, progress=False)  # resized batch by batch
    assert f["X"].shape == (3, 64 * 6 * 6)
    net = resnet(18, 2)
    assert extract(d, net, layer="logits", progress=False)["X"].shape == (3, 2)
    with pytest.raises(UnknownNameError, match="no layer group 'fc7'"):
        extract(d, net, layer="fc7", progress=False)
    with pytest.raises(ConfigError, match="vectors"):
        extract(Domain(np.zeros((4, 5), np.float32)), "mlp", size=32, progress=False)
    vec = extract(Domain(np.ones((4, 5), np.float32), None, "v"), "mlp", layer="fc1", progress=False)
    assert vec["X"].shape == (4, 256) and vec["y"] is None and vec["class_names"] is None


def test_cli_features_then_run_on_them(tmp_path, capsys, weights18):
    src, tgt = image_npz(tmp_path / "s.npz", seed=1), image_npz(tmp_path / "t.npz", shift=0.1, seed=2)
    for name, spec in (("fs", src), ("ft", tgt)):
        assert main(["features", "--data", f"npz:{spec}", "--backbone", "resnet18", "--weights", str(weights18),
                     "--layer", "pool", "--size", "32", "--batch-size", "16", "--no-progress",
                     "--out", str(tmp_path / f"{name}.npz")]) == 0
    assert "written:" in capsys.readouterr().out
    back = load_domain(f"npz:{tmp_path / 'fs.npz'}")
    assert back.sample_shape == (512,) and back.y.tolist() == (np.arange(40) % 3).tolist()
    assert back.class_names == ("a", "b", "c")
    out = tmp_path / "run"
    assert main(["run", "source-only", "--source", f"npz:{tmp_path / 'fs.npz'}", "--target",
                 f"npz:{tmp_path / 'ft.npz'}", "--epochs", "1", "--batch-size", "16", "--no-progress",
                 "--out", str(out)]) == 0
    assert json.loads((out / "model.json").read_text())["architecture"]["sample_shape"] == [512]
    assert main(["features", "--data", f"npz:{src}", "--backbone", "resnet18", "--out", str(tmp_path / "r.npz"),
                 "--no-progress"]) == 0
    assert "random" in capsys.readouterr().err  # no --weights: a warning, not an error
    assert main(["features", "--data", f"npz:{src}", "--backbone", "resnet18", "--layer", "fc9",
                 "--out", str(tmp_path / "x.npz")]) == 2
    assert "no layer group 'fc9'" in capsys.readouterr().err


def _detailed_folder(root):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray((rng.random((96, 96, 3)) * 255).astype(np.uint8)).save(root / c / f"{i}.png")
    return root


def test_a_folder_is_read_at_the_size_asked_not_at_32_px_and_enlarged(tmp_path):
    from qianyi.train.artefact import read_like_run

    root = _detailed_folder(tmp_path / "imgs")
    net = resnet(18, 2)
    a = extract(f"folder:{root}", net, layer="pool", size=48, progress=False)["X"]
    b = extract(f"folder:{root}?size=48", net, layer="pool", size=48, progress=False)["X"]
    np.testing.assert_array_equal(a, b)  # features --size 48 reads the files at 48 px
    meta = {"preprocessing": {"canvas": {"size": 48, "channels": 3, "protocol": "resize"}}}
    d = read_like_run(meta, f"folder:{root}")  # predict: a folder read at the run's canvas size
    np.testing.assert_array_equal(d.X, load_domain(f"folder:{root}?size=48").X)
