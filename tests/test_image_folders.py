"""Image folders as users bring them: phone photos (EXIF orientation), transparency, unusual extensions,
thumbnail and hidden sub-folders, linked sub-folders, class names spelt two ways (review images)."""
from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from PIL import Image

from qianyi.data.readers import read_folder
from qianyi.errors import DataError, QianyiWarning


def _band(size: int = 32) -> Image.Image:
    """A black RGB image with a white band along its top rows (so orientation shows)."""
    a = np.zeros((size, size, 3), np.uint8)
    a[:4] = 255
    return Image.fromarray(a)


def test_exif_orientation_is_applied_as_viewers_apply_it(tmp_path):
    """A phone stores the sensor's pixels and an EXIF Orientation tag; the reader used the stored pixels, so a
    photo shown upright everywhere reached the network turned 90 degrees."""
    up = _band()
    (tmp_path / "up").mkdir()
    (tmp_path / "phone").mkdir()
    up.save(tmp_path / "up" / "0.jpg", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # display: rotate 90 degrees clockwise
    up.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "phone" / "0.jpg", exif=exif, quality=95)
    for stream in (False, True):
        a = np.asarray(read_folder(tmp_path / "up", size=32, stream=stream).X[0:1])
        b = np.asarray(read_folder(tmp_path / "phone", size=32, stream=stream).X[0:1])
        assert b[0, 0, 0].mean() > 0.9 and b[0, 0, :, -1].mean() < 0.5  # the band along the top, as displayed
        assert np.abs(a - b).mean() < 0.02


def _cut_out(hidden: int, mode: str = "RGBA") -> Image.Image:
    """A 16x16 cut-out: an opaque orange square in the middle, a fully transparent border whose stored (hidden)
    colour is ``hidden``."""
    a = np.full((16, 16, 4), hidden, np.uint8)
    a[..., 3] = 0
    a[4:12, 4:12] = (255, 128, 0, 255)
    im = Image.fromarray(a, "RGBA")
    if mode == "LA":
        g = np.full((16, 16, 2), hidden, np.uint8)
        g[..., 1] = 0
        g[4:12, 4:12] = (100, 255)
        im = Image.fromarray(g, "LA")
    return im


def test_transparent_pixels_are_composited_on_white_whatever_colour_the_encoder_left(tmp_path):
    """The alpha channel was dropped, so a transparent pixel took the colour stored under it: two cut-outs that
    look the same gave different inputs (76% against 33% on one model)."""
    for hidden in (0, 255):
        for mode in ("RGBA", "LA"):
            (tmp_path / f"{mode}{hidden}").mkdir()
            _cut_out(hidden, mode).save(tmp_path / f"{mode}{hidden}" / "0.png")
    rgba0, rgba255 = (read_folder(tmp_path / f"RGBA{h}", size=16).X for h in (0, 255))
    np.testing.assert_array_equal(rgba0, rgba255)
    assert rgba0.shape == (1, 3, 16, 16)
    np.testing.assert_allclose(rgba0[0, :, 0, 0], 1.0)  # white background, as viewers show it
    np.testing.assert_allclose(rgba0[0, :, 8, 8], (1.0, 128 / 255, 0.0), atol=1e-6)  # opaque pixels as they are
    la0, la255 = (read_folder(tmp_path / f"LA{h}", size=16).X for h in (0, 255))
    np.testing.assert_array_equal(la0, la255)
    assert la0.shape == (1, 1, 16, 16)  # grey stays grey
    assert la0[0, 0, 0, 0] == 1.0 and abs(la0[0, 0, 8, 8] - 100 / 255) < 1e-6


def test_palette_transparency_is_composited_on_white_too(tmp_path):
    """A GIF or palette PNG marks one palette entry transparent; that entry's colour was read."""
    a = np.zeros((16, 16), np.uint8)  # index 0: the background, transparent
    a[4:12, 4:12] = 1
    im = Image.fromarray(a, "P")
    im.putpalette([0, 0, 0, 255, 128, 0] + [0] * 762)
    (tmp_path / "gif").mkdir()
    im.save(tmp_path / "gif" / "0.gif", transparency=0)
    im.save(tmp_path / "gif" / "1.png", transparency=0)
    for stream in (False, True):
        X = np.asarray(read_folder(tmp_path / "gif", size=16, stream=stream).X[0:2])
        np.testing.assert_allclose(X[:, :, 0, 0], 1.0)
        np.testing.assert_allclose(X[:, :, 8, 8], [(1.0, 128 / 255, 0.0)] * 2, atol=1e-6)


def _caught(fn):
    """``fn()`` and the QianyiWarning messages it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn()
    return out, [str(w.message) for w in caught if issubclass(w.category, QianyiWarning)]


def test_readable_image_extensions_are_read_and_other_files_are_counted_not_dropped_silently(tmp_path):
    """Only ten extensions were read: .jfif (Chrome/Edge's name for web JPEGs), .jpe, .avif, .pbm, ... vanished
    without a word, changing the class balance."""
    from PIL import features

    grey, rgb = Image.fromarray(np.full((8, 8), 200, np.uint8)), _band(8)
    for c in ("bag", "shoe"):
        (tmp_path / c).mkdir()
        rgb.save(tmp_path / c / "0.png")
    saves = {"a.jfif": "JPEG", "b.jpe": "JPEG", "c.JPE": "JPEG", "d.pnm": "PPM", "e.tga": "TGA", "f.dib": "DIB",
             "g.qoi": "QOI", **({"h.avif": "AVIF"} if features.check("avif") else {})}
    for name, fmt in saves.items():
        rgb.save(tmp_path / "bag" / name, format=fmt)
    grey.convert("1").save(tmp_path / "bag" / "i.pbm")
    rgb.save(tmp_path / "bag" / "noext", format="PNG")  # readable, but no extension: counted, not read
    rgb.save(tmp_path / "shoe" / "x.heic", format="PNG")
    for junk in ("notes.txt", "Thumbs.db", "desktop.ini", "IMG_1.aae", "IMG_1.xmp"):  # metadata: skipped silently
        (tmp_path / "shoe" / junk).write_bytes(b"not an image")
    d, said = _caught(lambda: read_folder(tmp_path, size=8))
    read = set(d.ids)
    assert {f"bag/{n}" for n in [*saves, "i.pbm"]} <= read and "bag/noext" not in read
    assert np.bincount(d.y).tolist() == [len(saves) + 2, 1]
    assert len(said) == 1, said
    assert "2 file(s)" in said[0] and "'bag': 1" in said[0] and "'shoe': 1" in said[0], said
    assert "'bag/noext'" in said[0] and "'shoe/x.heic'" in said[0] and "notes.txt" not in said[0], said
    flat, said = _caught(lambda: read_folder(tmp_path / "shoe", size=8))  # an unlabelled folder alike
    assert flat.ids == ("0.png",) and len(said) == 1 and "1 file(s)" in said[0] and "'x.heic'" in said[0], said


def test_hidden_and_thumbnail_folders_inside_class_folders_are_skipped_and_said_once(tmp_path):
    """Every sub-folder of a class folder was read: .thumbnails/, .ipynb_checkpoints/ and a Synology share's
    @eaDir/<photo>/SYNOPHOTO_THUMB_*.jpg made each photo count several times (straddling the source-val split),
    and an unpacked macOS zip's __MACOSX/ became a class."""
    im = _band(8)
    for c in ("bag", "shoe"):
        for sub in ("", ".thumbnails", ".ipynb_checkpoints", "@eaDir/0.jpg", "deeper"):
            (tmp_path / c / sub).mkdir(parents=True, exist_ok=True)
            im.save(tmp_path / c / sub / ("SYNOPHOTO_THUMB_S.jpg" if sub.startswith("@") else "0.jpg"))
    (tmp_path / "__MACOSX" / "bag").mkdir(parents=True)
    (tmp_path / "__MACOSX" / "bag" / "._0.jpg").write_bytes(b"AppleDouble")
    (tmp_path / "@eaDir").mkdir()
    im.save(tmp_path / "@eaDir" / "x.jpg")
    d, said = _caught(lambda: read_folder(tmp_path, size=8))
    assert d.class_names == ("bag", "shoe")
    assert d.ids == ("bag/0.jpg", "bag/deeper/0.jpg", "shoe/0.jpg", "shoe/deeper/0.jpg")
    assert len(said) == 1, said
    assert "8 hidden or thumbnail folder(s)" in said[0] and "'bag/.thumbnails'" in said[0], said
    assert "'__MACOSX'" in said[0] and "'@eaDir'" in said[0] and "not a class" in said[0], said
    flat = tmp_path / "flat"  # an unlabelled folder: no class of thumbnails either
    for sub in ("", ".thumbnails", "@eaDir/0.jpg"):
        (flat / sub).mkdir(parents=True)
        im.save(flat / sub / "0.jpg")
    d, said = _caught(lambda: read_folder(flat, size=8))
    assert d.y is None and d.ids == ("0.jpg",) and len(said) == 1, (d, said)
    assert "'@eaDir'" in said[0], said


def test_linked_sub_folders_inside_class_folders_are_followed_once_as_imagefolder_does(tmp_path):
    """A linked class folder was read but a linked folder inside a class was dropped without a word (torchvision's
    ImageFolder follows both); a link back up the tree must not loop."""
    im = _band(8)
    elsewhere, root = tmp_path / "elsewhere", tmp_path / "data"
    for sub in (elsewhere / "more", root / "bag", root / "shoe"):
        sub.mkdir(parents=True)
    im.save(elsewhere / "more" / "1.png")
    im.save(root / "bag" / "0.png")
    im.save(root / "shoe" / "0.png")
    (root / "bag" / "more").symlink_to(elsewhere / "more", target_is_directory=True)
    (root / "bag" / "loop").symlink_to(root / "bag", target_is_directory=True)  # a cycle
    (root / "shoe" / "again").symlink_to(elsewhere, target_is_directory=True)  # more/ a second time, deeper
    (root / "shoe" / "same").symlink_to(elsewhere, target_is_directory=True)
    for stream in (False, True):
        d, said = _caught(lambda: read_folder(root, size=8, stream=stream))
        assert d.ids == ("bag/0.png", "bag/more/1.png", "shoe/0.png", "shoe/again/more/1.png"), d.ids
        assert len(said) == 1 and "2 linked folder(s)" in said[0] and "'bag/loop'" in said[0], said


def _two_classes(root, names):
    rng = np.random.default_rng(int.from_bytes(root.name.encode(), "big"))  # distinct images in each folder
    for c in names:
        (root / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


def test_class_names_spelt_in_nfd_match_their_nfc_spelling(tmp_path):
    """macOS and some zip tools store 'café' decomposed (NFD); it was refused as a class the source lacks, with a
    message naming a class that looks exactly like the source's."""
    import unicodedata

    from qianyi.data import load_task
    from qianyi.data.domain import Domain, align_labels

    nfc, nfd = "café", unicodedata.normalize("NFD", "café")
    assert nfc != nfd
    src, tgt = _two_classes(tmp_path / "src", [nfc, "tea"]), _two_classes(tmp_path / "tgt", [nfd, "tea"])
    assert read_folder(tgt, size=8).class_names == (nfc, "tea")  # read in the composed spelling
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QianyiWarning)  # (a test split of 4 images)
        task = load_task(f"folder:{src}?size=8", f"folder:{tgt}?size=8", test_fraction=0.5)
    assert task.target.class_names == (nfc, "tea")
    # any reader's names (wav:, lines:, a Domain of your own) are compared as they are spelt alike
    X = np.zeros((4, 2), np.float32)
    s = Domain(X, np.array([0, 0, 1, 1]), name="s", class_names=(nfc, "tea"))
    t = Domain(X, np.array([0, 1, 0, 1]), name="t", class_names=("tea", nfd))
    assert align_labels(s, t).y.tolist() == [1, 0, 1, 0]


def test_a_class_name_differing_only_in_case_is_suggested(tmp_path):
    from qianyi.data import load_task
    from qianyi.errors import LabelMismatchError

    src, tgt = _two_classes(tmp_path / "src", ["bag", "shoe"]), _two_classes(tmp_path / "tgt", ["Bag", "shoe"])
    with pytest.raises(LabelMismatchError, match="did you mean 'bag'"):
        load_task(f"folder:{src}?size=8", f"folder:{tgt}?size=8")


def test_two_class_folders_spelt_alike_are_refused(tmp_path):
    import unicodedata

    from qianyi.errors import DataError

    _two_classes(tmp_path, ["café", unicodedata.normalize("NFD", "café")])
    with pytest.raises(DataError, match="spell one name two ways"):
        read_folder(tmp_path, size=8)


_BRIGHT = itertools.cycle(range(200, 256))


def _wide(root, n: int = 4):
    """Wide (48x24) photos: a bright square in the middle (a level of its own in each image, >= 200), grey bars
    (100) left and right, cut off by a centre crop."""
    root.mkdir(parents=True)
    for i in range(n):
        a = np.full((24, 48, 3), 100, np.uint8)
        a[:, 12:36] = next(_BRIGHT)
        Image.fromarray(a).save(root / f"{i}.png")
    return root


def test_resize_crop_takes_the_centre_square_where_pad_adds_black_bars(tmp_path):
    """folder: only padded non-square photos with black to a square, unlike the centre crops ImageNet backbones
    are fed and checked with (docs/backbones.md); ?resize=crop takes the centre square instead."""
    from qianyi.data import load_domain
    from qianyi.errors import UnknownNameError

    root = _wide(tmp_path / "wide")
    pad = load_domain(f"folder:{root}?size=24").X
    assert pad.shape == (4, 3, 24, 24) and pad[0, :, 0].max() == 0.0  # black rows above the photo
    for spec in (f"folder:{root}?size=24&resize=crop", f"folder:{root}?size=24&resize=crop&stream=1"):
        crop = np.asarray(load_domain(spec).X[0:4])
        assert crop.shape == (4, 3, 24, 24) and crop.min() >= 200 / 255, spec  # the centre, no bars
    with pytest.raises(DataError, match="resize=pad or resize=crop"):
        load_domain(f"folder:{root}?resize=fill")
    with pytest.raises(UnknownNameError):
        load_domain(f"npz:{root}/x.npz?resize=crop")


def test_resize_crop_travels_with_the_run_to_predict(tmp_path):
    """A run trained on ?resize=crop folders records it (model.json's preprocessing), so predict, features of a
    run's data and translate read a new folder the same way without being told."""
    from qianyi.data.tasks import load_task
    from qianyi.train.artefact import read_like_run

    for c in ("a", "b"):
        _wide(tmp_path / "src" / c, 6)
        _wide(tmp_path / "tgt" / c, 5)
    new = _wide(tmp_path / "new", 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QianyiWarning)
        task = load_task(f"folder:{tmp_path / 'src'}?resize=crop", f"folder:{tmp_path / 'tgt'}?resize=crop")
        plain = load_task(f"folder:{tmp_path / 'src'}", f"folder:{tmp_path / 'tgt'}")
    assert task.preprocessing["folder_resize"] == "crop" and "folder_resize" not in plain.preprocessing
    meta = {"preprocessing": task.preprocessing}
    assert read_like_run(meta, f"folder:{new}").X.min() >= 200 / 255  # cropped: no bars
    assert read_like_run(meta, f"folder:{new}?resize=pad").X.min() == 0.0  # the spec's own choice wins
    assert read_like_run({"preprocessing": plain.preprocessing}, f"folder:{new}").X.min() == 0.0
    with pytest.raises(DataError, match="give both the same"):
        load_task(f"folder:{tmp_path / 'src'}?resize=crop", f"folder:{tmp_path / 'tgt'}")


def test_a_target_test_folder_is_read_with_the_runs_resize(tmp_path):
    """--target-test (and bench --target-tests) was read on its own, with the default pad: a ?resize=crop run
    trained on centre crops was scored on black-barred test images, without a word."""
    from qianyi.data.tasks import load_task

    for c in ("a", "b"):
        for side, n in (("src", 6), ("tgt", 5), ("tst", 4)):
            _wide(tmp_path / side / c, n)
    src, tgt, tst = (f"folder:{tmp_path / s}" for s in ("src", "tgt", "tst"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QianyiWarning)
        task = load_task(f"{src}?resize=crop", f"{tgt}?resize=crop", target_test=tst)
        assert task.target_test.X.min() >= 200 / 255  # cropped as the run's images were: no black bars
        same = load_task(f"{src}?resize=crop", f"{tgt}?resize=crop", target_test=f"{tst}?resize=crop")
        np.testing.assert_array_equal(same.target_test.X, task.target_test.X)
        assert load_task(src, tgt, target_test=tst).target_test.X.min() == 0.0  # a pad run: padded, as before
        with pytest.raises(DataError, match=r"different \?resize="):  # the test spec's own, other choice: refused
            load_task(f"{src}?resize=crop", f"{tgt}?resize=crop", target_test=f"{tst}?resize=pad")
        with pytest.raises(DataError, match=r"different \?resize="):
            load_task(src, tgt, target_test=f"{tst}?resize=crop")


def test_streamed_folders_get_new_keys_only_where_the_decoding_changed_their_pixels(tmp_path):
    """A streamed folder's key (LazyImages.fingerprint) hashed each file's size and time, not its pixels: after
    EXIF orientation and transparency were applied, a bench reused runs trained on sideways and unflattened photos
    beside new ones, and a checkpoint resumed across the change. In-memory folders' keys are their pixels, so only
    folders holding such a file change; streamed ones now do the same."""
    from qianyi.data.lazy import LazyImages

    plain = tmp_path / "plain"
    plain.mkdir()
    _band().save(plain / "0.png")
    opaque = np.full((16, 16, 4), 200, np.uint8)
    opaque[..., 3] = 255
    Image.fromarray(opaque, "RGBA").save(plain / "1.png")  # RGBA but opaque: its pixels are as before
    exif = Image.Exif()
    exif[0x0112] = 6
    for name, write in (("turned", lambda d: _band().save(d / "2.jpg", exif=exif)),
                        ("cutout", lambda d: _cut_out(0).save(d / "2.png"))):
        d = tmp_path / name
        d.mkdir()
        for f in plain.iterdir():
            (d / f.name).write_bytes(f.read_bytes())
        write(d)
    for name in ("plain", "turned", "cutout"):
        X = read_folder(tmp_path / name, size=16, stream=True).X
        before = LazyImages(X.files, X.size, X.grey, fit=X.fit)  # the key as it was computed before the change
        assert (X.fingerprint() == before.fingerprint()) == (name == "plain"), name
        assert X.view([0, 1]).fingerprint() == before.view([0, 1]).fingerprint()  # the unchanged files keep theirs
