"""ResNet backbones: named groups, torchvision-compatible weight files (safe loading), --backbone end to end."""
from __future__ import annotations

import csv
import hashlib
import json

import numpy as np
import pytest
import torch

import qianyi
from qianyi.cli import main
from qianyi.errors import ConfigError, DataError, UnknownNameError
from qianyi.methods import get_method
from qianyi.nn.resnet import BACKBONES, NamedBackbone, named_backbone, resnet
from qianyi.train.run import run_fingerprint


def torchvision_state(depth: int, seed: int = 0, fc_classes: int = 1000) -> dict[str, torch.Tensor]:
    """A state dict with torchvision's ResNet key names (what resnet18-f37072fd.pth holds), random values."""
    torch.manual_seed(seed)
    model = resnet(depth, 3)
    state = {}
    for key, value in model.state_dict().items():
        _, group, rest = key.split(".", 2)
        if group in ("stem", "layer1", "layer2", "layer3", "layer4"):
            state[rest if group == "stem" else f"{group}.{rest}"] = value.clone()
    width = 512 if depth == 18 else 2048
    state["fc.weight"], state["fc.bias"] = torch.randn(fc_classes, width), torch.randn(fc_classes)
    return state


@pytest.fixture(scope="module")
def weights18(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "resnet18-test.pth"
    torch.save(torchvision_state(18), path)
    return path


def image_npz(path, n: int = 40, shift: float = 0.0, seed: int = 0, channels: int = 3, size: int = 32):
    """Three classes, each a bright square in its own channel/place over noise; ``shift`` brightens all."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = rng.random((n, channels, size, size)).astype(np.float32) * 0.3
    for k in range(3):
        X[y == k, k % channels, 4 + 6 * k:12 + 6 * k, 8:24] += 0.6
    np.savez(path, X=np.clip(X + shift, 0, 1), y=y, class_names=np.array(["a", "b", "c"]))
    return path


def test_groups_roles_and_shapes():
    m = resnet(18, 5)
    assert m.group_names == ("stem", "layer1", "layer2", "layer3", "layer4", "pool", "bottleneck", "logits")
    assert m.feature_layer == "bottleneck" and m.feature_dim() == 256
    assert m.lr_mults == {} and m.spec == {"name": "resnet18", "bottleneck": 256}
    out = m(torch.rand(4, 3, 32, 32))
    assert out.features.shape == (4, 256) and out.logits.shape == (4, 5) and out["pool"].shape == (4, 512)
    assert out["layer4"].shape == (4, 512, 1, 1)
    assert not any("normalize" in k for k in m.state_dict())  # the ImageNet normalisation is not saved


def test_resnet50_forward_and_bottleneck_width():
    m = resnet(50, 7, bottleneck=64).eval()
    out = m(torch.rand(2, 3, 32, 32))
    assert out["pool"].shape == (2, 2048) and out.features.shape == (2, 64) and out.logits.shape == (2, 7)


def test_grey_images_get_a_one_channel_conv1():
    m = named_backbone("resnet18", (1, 28, 28), 10)
    assert m.groups["stem"].conv1.weight.shape == (64, 1, 7, 7)
    assert m(torch.rand(3, 1, 28, 28)).logits.shape == (3, 10)


def test_unknown_names_and_wrong_inputs():
    with pytest.raises(UnknownNameError, match="lenet, mlp, resnet18, resnet50"):
        named_backbone("resnet34", (3, 32, 32), 2)
    with pytest.raises(UnknownNameError, match="available"):
        NamedBackbone("vgg16")
    with pytest.raises(DataError, match="reads images"):
        named_backbone("resnet18", (20,), 2)
    with pytest.raises(ConfigError, match="--init-from"):
        NamedBackbone("lenet", weights="x.pth")
    assert set(BACKBONES) == {"lenet", "mlp", "resnet18", "resnet50", "efficientnet-lite0", "embbag", "textcnn", "memnet", "minilm"}  # text: qianyi.nn.text
    assert named_backbone("mlp", (1, 8, 8), 3)(torch.rand(4, 1, 8, 8)).logits.shape == (4, 3)


def test_loading_a_torchvision_weights_file(weights18, tmp_path):
    state = torchvision_state(18)
    m = resnet(18, 4, weights=weights18)
    assert torch.equal(m.groups["stem"].conv1.weight, state["conv1.weight"])
    assert torch.equal(m.groups["layer4"][1].bn2.running_var, state["layer4.1.bn2.running_var"])
    assert m.lr_mults == {"stem": 0.1, "layer1": 0.1, "layer2": 0.1, "layer3": 0.1, "layer4": 0.1, "pool": 1.0,
                          "bottleneck": 1.0, "logits": 1.0}
    assert m.spec["pretrained_sha256"] == hashlib.sha256(weights18.read_bytes()).hexdigest()
    assert NamedBackbone("resnet18", weights=weights18).spec == m.spec  # what the fingerprint records
    grey = resnet(18, 4, in_channels=1, weights=weights18)  # the RGB filters, summed over their channels
    assert torch.allclose(grey.groups["stem"].conv1.weight, state["conv1.weight"].sum(1, keepdim=True))
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}  # older files lack them
    torch.save(old, tmp_path / "old.pth")
    assert torch.equal(resnet(18, 2, weights=tmp_path / "old.pth").groups["layer1"][0].conv1.weight,
                       state["layer1.0.conv1.weight"])


def test_safetensors_weights(tmp_path):
    st = pytest.importorskip("safetensors.torch", reason="safetensors is not installed (optional)")
    state = torchvision_state(18)
    st.save_file(state, str(tmp_path / "r18.safetensors"))
    m = resnet(18, 2, weights=tmp_path / "r18.safetensors")
    assert torch.equal(m.groups["layer2"][0].downsample[0].weight, state["layer2.0.downsample.0.weight"])


def test_bad_weight_files_are_named_and_never_unpickled(tmp_path, weights18):
    with pytest.raises(DataError, match="missing.pth.*does not exist"):
        resnet(18, 2, weights=tmp_path / "missing.pth")
    (tmp_path / "text.pth").write_text("not weights")
    with pytest.raises(DataError, match="text.pth.*not a file written by torch.save"):
        resnet(18, 2, weights=tmp_path / "text.pth")
    (tmp_path / "cut.pth").write_bytes(weights18.read_bytes()[:100_000])
    with pytest.raises(DataError, match="cut.pth") as info:
        resnet(18, 2, weights=tmp_path / "cut.pth")
    assert "weights_only=False" not in str(info.value)
    torch.save({"conv1.weight": Exception("an object")}, tmp_path / "obj.pth")
    with pytest.raises(DataError, match="never unpickled") as info:
        resnet(18, 2, weights=tmp_path / "obj.pth")
    assert "weights_only" not in str(info.value)


def test_wrong_keys_are_named(tmp_path):
    state = torchvision_state(18)
    del state["layer3.1.conv2.weight"]
    torch.save(state, tmp_path / "missing_key.pth")
    with pytest.raises(DataError, match="missing_key.pth.*'layer3.1.conv2.weight'"):
        resnet(18, 2, weights=tmp_path / "missing_key.pth")
    state = torchvision_state(18)
    state["layer1.2.conv1.weight"] = torch.zeros(64, 64, 3, 3)  # a ResNet-34 file has a third block
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(DataError, match="first: 'layer1.2.conv1.weight'"):
        resnet(18, 2, weights=tmp_path / "extra.pth")
    torch.save(torchvision_state(18), tmp_path / "r18.pth")
    with pytest.raises(DataError, match=r"'layer1.0.conv1.weight' has shape \(64, 64, 3, 3\) but resnet50"):
        resnet(50, 2, weights=tmp_path / "r18.pth")


def test_same_keys_and_outputs_as_torchvision(tmp_path):
    try:
        from torchvision.models import resnet18 as tv_resnet18
    except Exception as exc:  # missing, or a build that does not match the installed torch
        pytest.skip(f"torchvision is not importable here ({type(exc).__name__}); install the torchvision build that "
                    "matches your torch to compare against it")
    tv = tv_resnet18(weights=None).eval()
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    m = resnet(18, 3, weights=tmp_path / "tv.pth").eval()
    x = torch.rand(2, 3, 64, 64)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    tv.fc = torch.nn.Identity()
    with torch.no_grad():
        assert torch.allclose(tv((x - mean) / std), m(x)["pool"], atol=1e-5)


def test_cli_run_named_backbone_then_load_model_and_predict(tmp_path, capsys, weights18):
    src, tgt = image_npz(tmp_path / "s.npz", seed=1), image_npz(tmp_path / "t.npz", shift=0.1, seed=2)
    w = tmp_path / "w.pth"
    w.write_bytes(weights18.read_bytes())
    out = tmp_path / "run"
    rc = main(["run", "source-only", "--backbone", "resnet18", "--weights", str(w), "--source", f"npz:{src}",
               "--target", f"npz:{tgt}", "--epochs", "1", "--batch-size", "16", "--no-progress", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    meta = json.loads((out / "model.json").read_text())
    arch = meta["architecture"]
    assert arch["backbone"] == "resnet18" and arch["bottleneck"] == 256 and arch["in_channels"] == 3
    assert arch["pretrained_sha256"] == hashlib.sha256(w.read_bytes()).hexdigest()
    res = json.loads((out / "result.json").read_text())
    assert res["fingerprint"]["backbone"]["name"] == "resnet18"
    w.unlink()  # the trained weights are in model.pt: the ImageNet file is not needed any more
    model = qianyi.load_model(out)
    assert model.network.group_names[-3:] == ("pool", "bottleneck", "logits")
    assert model.predict(np.random.default_rng(0).random((3, 3, 32, 32)).astype(np.float32)).shape == (3,)
    capsys.readouterr()
    assert main(["predict", str(out), "--data", f"npz:{tgt}", "--out", str(tmp_path / "p.csv")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert len(rows) == 40 and {r["predicted"] for r in rows} <= {"a", "b", "c"}


@pytest.mark.filterwarnings("ignore::qianyi.errors.QianyiWarning")  # a tiny target test split, on purpose
def test_bench_runs_of_a_named_backbone_are_their_own(tmp_path, capsys):
    src, tgt = image_npz(tmp_path / "s.npz", n=24, seed=1), image_npz(tmp_path / "t.npz", n=24, shift=0.1, seed=2)
    args = ["bench", "--methods", "source-only", "--pairs", f"npz:{src}->npz:{tgt}", "--seeds", "1", "--epochs", "1",
            "--batch-size", "8", "--no-progress", "--out", str(tmp_path / "b")]
    assert main([a if a != "source-only" else "dan" for a in args]) == 0  # dan on the default network first
    assert main(args + ["--backbone", "resnet18"]) == 0
    capsys.readouterr()
    assert main(args + ["--backbone", "resnet18"]) == 0
    assert capsys.readouterr().err.count("(done earlier)") == 2  # source-only and oracle reused
    task = qianyi.load_task(f"npz:{src}", f"npz:{tgt}")
    fps = [run_fingerprint(get_method("source-only"), qianyi.TrainConfig(), task, b)
           for b in (None, "lenet", "resnet18", "resnet50", NamedBackbone("resnet18", bottleneck=128))]
    assert len({json.dumps(fp, sort_keys=True) for fp in fps}) == len(fps)  # another network is another run
    # dan's runs (default network) and the newer baselines (resnet18) in one folder: summary tabulated dan's gap
    # closed against resnet18's source-only and oracle, silently; now it is refused, as other settings are
    capsys.readouterr()
    assert main(["summary", str(tmp_path / "b")]) == 2
    assert "different networks (the default network (dan) vs resnet18" in capsys.readouterr().err


def test_cli_backbone_mistakes_exit_2(tmp_path, capsys):
    assert main(["run", "dan", "--source", "digits", "--target", "digits", "--backbone", "resnet34"]) == 2
    assert "unknown backbone 'resnet34'" in capsys.readouterr().err
    assert main(["run", "dan", "--source", "digits", "--target", "digits", "--weights", "w.pth"]) == 2
    assert "--weights needs --backbone" in capsys.readouterr().err
    assert main(["run", "dan", "--source", "digits", "--target", "digits", "--backbone", "resnet50",
                 "--weights", str(tmp_path / "none.pth")]) == 2
    assert "none.pth' does not exist" in capsys.readouterr().err


def test_freezing_needs_weights_in_the_frozen_groups(weights18):
    """--freeze keeps pretrained (or copied) layers; on qianyi's own random networks it is refused, as is
    --copied-lr-mult with nothing copied (pretrained layers are not 'copied': they train at their own 0.1)."""
    from qianyi.data.domain import Domain, TransferTask
    from qianyi.train import TrainConfig

    rng = np.random.default_rng(0)
    X, y = rng.random((24, 3, 32, 32)).astype("f4"), np.arange(24) % 2
    task = TransferTask.from_domains(Domain(X, y, "s"), Domain(1 - X, y, "t"))
    cfg = TrainConfig(epochs=1, steps_per_epoch=1, batch_size=8, freeze=2, progress=False)
    start = resnet(18, 2, weights=weights18).groups["stem"].conv1.weight.detach().clone()
    _, fit = qianyi.run("source-only", task, cfg, backbone=NamedBackbone("resnet18", weights=weights18))
    assert torch.equal(fit.model.groups["stem"].conv1.weight, start)  # the ImageNet layer kept, as asked
    for backbone in ("resnet18", None):  # random weights: nothing to keep
        with pytest.raises(ConfigError, match=r"\['stem', 'layer1'\]|\['conv1', 'conv2'\]|random initialisation"):
            qianyi.run("source-only", task, cfg, backbone=backbone)
    from qianyi.train.config import check_copied_lr_mult

    with pytest.raises(ConfigError, match="copied_lr_mult=0.1 scales.*init_from"):
        check_copied_lr_mult(TrainConfig(copied_lr_mult=0.1), ["dann"])
    check_copied_lr_mult(TrainConfig(copied_lr_mult=0.1), ["self-train"])  # its stages copy the source stage
    for name in ("lenet", "mlp"):  # qianyi's named random networks are refused too
        with pytest.raises(ConfigError, match="random initialisation"):
            qianyi.run("source-only", task, cfg, backbone=name)
    # a factory of yours may load weights into qianyi's resnet: trusted, as an instance is
    mine = resnet(18, 2, weights=weights18).state_dict()

    def factory(shape, k):
        net = resnet(18, k, in_channels=shape[0])
        net.load_state_dict(mine)
        return net
    _, fit = qianyi.run("source-only", task, cfg, backbone=factory)
    assert torch.equal(fit.model.groups["stem"].conv1.weight, start)
