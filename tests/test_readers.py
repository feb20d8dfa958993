"""Readers on hostile or awkward input: every bad file ends in a DataError naming it, sizes are bounded."""
from __future__ import annotations

import gzip
import io
import struct
import zipfile
import zlib

import numpy as np
import numpy.lib.format as npy
import pytest
from PIL import Image

from qianyi.data import load_domain, load_task
from qianyi.data import canvas, readers
from qianyi.data.readers import _not_utf8_advice, read_csv, read_folder, read_idx, read_npz
from qianyi.errors import DataError, DatasetNotFoundError, QianyiError

from .conftest import requires_data


def _raises(fn, *match: str, path=None):
    """Call ``fn``; it must raise a DataError whose message names ``path`` and contains every ``match``."""
    with pytest.raises(DataError) as info:
        fn()
    msg = str(info.value)
    if path is not None:
        assert str(path) in msg, msg
    for m in match:
        assert m in msg, msg
    return msg


# --- limits ----------------------------------------------------------------------------------

def test_limits_are_read_from_the_environment_at_each_call(monkeypatch):
    from qianyi.data.limits import check_bytes, max_bytes, max_image_pixels

    monkeypatch.delenv("QIANYI_MAX_BYTES", raising=False)
    monkeypatch.delenv("QIANYI_MAX_IMAGE_PIXELS", raising=False)
    assert max_bytes() == 4 << 30 and max_image_pixels() == 100_000_000
    monkeypatch.setenv("QIANYI_MAX_BYTES", "1M")
    monkeypatch.setenv("QIANYI_MAX_IMAGE_PIXELS", "10_000")
    assert max_bytes() == 1 << 20 and max_image_pixels() == 10_000
    msg = _raises(lambda: check_bytes(2 << 20, "IDX file 'x'", (2, 1024, 1024)),
                  "IDX file 'x' declares 2,097,152 bytes once loaded", "(shape (2, 1024, 1024))", "QIANYI_MAX_BYTES")
    assert "1,048,576" in msg
    for bad in ("lots", "-5", "0"):
        monkeypatch.setenv("QIANYI_MAX_BYTES", bad)
        _raises(max_bytes, "QIANYI_MAX_BYTES", repr(bad))


# --- npz -------------------------------------------------------------------------------------

def _npz_with_header(path, header: dict, data: bytes = b"", key: str = "X") -> None:
    """An .npz whose member ``key`` has the given .npy header and (possibly short) data."""
    buf = io.BytesIO()
    npy.write_array_header_1_0(buf, header)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{key}.npy", buf.getvalue() + data)  # the header starts with the .npy magic


def test_npz_random_bytes_are_not_an_npz(tmp_path):
    p = tmp_path / "noise.npz"
    p.write_bytes(np.random.default_rng(0).bytes(200))
    msg = _raises(lambda: read_npz(p), "not an .npz file (a zip of .npy arrays", "numpy.savez", path=p)
    assert "pickle" not in msg and "object arrays" not in msg
    np.save(tmp_path / "single.npy", np.zeros((3, 2)))
    _raises(lambda: read_npz(tmp_path / "single.npy"), "single .npy array", "numpy.savez", path=tmp_path / "single.npy")


def test_npz_header_declaring_a_huge_array_is_refused_before_allocating(tmp_path):
    p = tmp_path / "huge.npz"
    _npz_with_header(p, {"descr": "<f8", "fortran_order": False, "shape": (10**8, 10**8)}, b"\0" * 64)
    _raises(lambda: read_npz(p), "declares 80,000,000,000,000,000 bytes", "QIANYI_MAX_BYTES", path=p)


def test_npz_object_arrays_are_refused_with_their_own_message(tmp_path):
    p = tmp_path / "obj.npz"
    np.savez(p, X=np.array([{"a": 1}], dtype=object))
    _raises(lambda: read_npz(p), "object arrays are refused", path=p)


def test_npz_member_shorter_than_its_header_is_truncated_without_object_hint(tmp_path):
    p = tmp_path / "short.npz"
    _npz_with_header(p, {"descr": "<f4", "fortran_order": False, "shape": (10, 3)}, b"\0" * 40)
    msg = _raises(lambda: read_npz(p), "truncated", path=p)
    assert "object arrays" not in msg


def test_npz_truncated_zip_is_a_data_error(tmp_path):
    p = tmp_path / "cut.npz"
    np.savez_compressed(p, X=np.random.default_rng(0).random((50, 8)), y=np.arange(50) % 2)
    p.write_bytes(p.read_bytes()[:300])
    msg = _raises(lambda: read_npz(p), "cannot be read", path=p)
    assert "object arrays" not in msg


def test_npz_labels_must_be_one_dimensional(tmp_path):
    p = tmp_path / "y2d.npz"
    np.savez(p, X=np.zeros((4, 3)), y=np.zeros((4, 1), np.int64))
    _raises(lambda: read_npz(p), "1-d", path=p)


def test_npz_minus_one_plus_one_labels_are_refused_with_the_fix(tmp_path):
    # review (classes) finding 7: "labels y contain negative values (-1); use 0..k-1", where the CSV reader says
    # how to renumber them; an npz carries their names in class_names=
    p = tmp_path / "pm1.npz"
    np.savez(p, X=np.zeros((4, 3)), y=np.array([-1, 1, -1, 1]))
    msg = _raises(lambda: read_npz(p), "y holds negative numbers (e.g. [-1])", path=p)
    assert "renumber them (-1/+1 as 0/1: y = (y > 0).astype(int))" in msg and "class_names=" in msg


# --- IDX -------------------------------------------------------------------------------------

def _idx_header(*dims: int) -> bytes:
    return struct.pack(">BBBB", 0, 0, 8, len(dims)) + b"".join(struct.pack(">I", d) for d in dims)


def test_idx_header_whose_size_overflows_int64_is_refused(tmp_path):
    # 2**22 * 2**21 * 2**21 = 2**64: np.prod wraps to 0 and the old reader failed in reshape
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(_idx_header(2**22, 2**21, 2**21))
    _raises(lambda: read_idx(tmp_path), "QIANYI_MAX_BYTES", path=p)


def test_idx_gzip_bomb_declaring_its_size_is_refused_before_inflating(tmp_path, monkeypatch):
    monkeypatch.setenv("QIANYI_MAX_BYTES", "1M")
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(_idx_header(4, 1024, 1024) + bytes(4 << 20), 1))
    _raises(lambda: read_idx(tmp_path), "declares 16,777,216 bytes once loaded", "QIANYI_MAX_BYTES", path=p)


class _CountingGzip:
    """gzip.open stand-in counting the inflated bytes handed out."""

    total = 0

    def __init__(self, path, mode="rb"):
        self.fh = gzip.GzipFile(path, mode)

    def read(self, size=-1):
        data = self.fh.read(size)
        _CountingGzip.total += len(data)
        return data

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()


def test_idx_gzip_whose_header_lies_is_never_fully_inflated(tmp_path, monkeypatch):
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(_idx_header(2, 4, 4) + bytes(4 << 20), 1))  # promises 32 bytes, holds 4 MB
    monkeypatch.setattr(readers.gzip, "open", _CountingGzip)
    _CountingGzip.total = 0
    _raises(lambda: read_idx(tmp_path), "more data than its header promises", path=p)
    assert _CountingGzip.total <= 64


def test_idx_corrupt_deflate_stream_is_a_data_error(tmp_path):
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(b"")[:10] + b"\xff" * 64)  # a gzip header, then an invalid deflate block
    _raises(lambda: read_idx(tmp_path), "cannot be read", path=p)


def test_idx_given_a_file_asks_for_its_folder(tmp_path):
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(_idx_header(1, 2, 2) + bytes(4))
    _raises(lambda: read_idx(p), "expects the folder holding the idx files", path=p)


def test_idx_label_count_mismatch_and_max_samples(tmp_path):
    (tmp_path / "t-images-idx3-ubyte").write_bytes(_idx_header(5, 2, 2) + bytes(range(20)))
    (tmp_path / "t-labels-idx1-ubyte").write_bytes(_idx_header(4) + bytes([0, 1, 0, 1]))
    _raises(lambda: read_idx(tmp_path), "5 images", "4 labels", path=tmp_path / "t-labels-idx1-ubyte")
    (tmp_path / "t-labels-idx1-ubyte").write_bytes(_idx_header(5) + bytes([0, 1, 0, 1, 1]))
    d = read_idx(tmp_path, max_samples=3)
    assert d.X.shape == (3, 1, 2, 2) and d.y.tolist() == [0, 1, 0]


# --- image folders ---------------------------------------------------------------------------

def _png_header_only(path, w: int, h: int) -> None:
    """A PNG that declares w x h pixels but holds (almost) no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def _image_folder(root, counts: dict[str, int], size=(12, 10), mode="RGB", fmt="png", seed=0):
    rng = np.random.default_rng(seed)
    for c, n in counts.items():
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shape = size[::-1] + ((3,) if mode == "RGB" else ())
            Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(root / c / f"{i}.{fmt}")
    return root


def test_folder_size_must_be_a_whole_number_from_8_to_1024(tmp_path):
    _image_folder(tmp_path, {"a": 1})
    for bad in (4, 2000, "64", 16.0, True):
        _raises(lambda: read_folder(tmp_path, size=bad), "size must be", "8 to 1024", path=tmp_path)


def test_folder_given_a_file_asks_for_a_folder(tmp_path):
    p = _image_folder(tmp_path, {"a": 1}) / "a" / "0.png"
    _raises(lambda: read_folder(p), "folder: expects a folder with one sub-folder per class", path=p)


def test_folder_image_declaring_too_many_pixels_is_refused_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setenv("QIANYI_MAX_IMAGE_PIXELS", "10000")
    _image_folder(tmp_path, {"a": 1}, size=(300, 300))
    _raises(lambda: read_folder(tmp_path), "300x300 = 90,000 pixels", "QIANYI_MAX_IMAGE_PIXELS",
            path=tmp_path / "a" / "0.png")


def test_a_folder_too_big_for_memory_is_refused_before_decoding(tmp_path, monkeypatch):
    # the in-memory reader ignored QIANYI_MAX_BYTES (a large folder ended in the OOM killer)
    _image_folder(tmp_path, {"a": 3, "b": 3})
    small = read_folder(tmp_path, size=8)
    assert small.X.shape[0] == 6 and small.X.shape[2:] == (8, 8) and small.X.flags["C_CONTIGUOUS"]
    monkeypatch.setenv("QIANYI_MAX_BYTES", "10000")
    _raises(lambda: read_folder(tmp_path, size=64), "6 images at 64x64 take 294,912 bytes", "stream=1", path=tmp_path)


def test_folder_decompression_bombs_are_data_errors(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    p = tmp_path / "a" / "bomb.png"
    _png_header_only(p, 14000, 14000)  # beyond Pillow's own limit too: ours is the one that speaks
    _raises(lambda: read_folder(tmp_path), "196,000,000 pixels", "QIANYI_MAX_IMAGE_PIXELS", path=p)
    _raises(lambda: read_folder(tmp_path, stream=True), "QIANYI_MAX_IMAGE_PIXELS", path=p)  # streamed alike
    monkeypatch.setenv("QIANYI_MAX_IMAGE_PIXELS", "300M")  # raisable past Pillow's ~179M: the header passes,
    _raises(lambda: read_folder(tmp_path), "cannot be read", path=p)  # and the missing pixel data is named


def test_folder_truncated_image_is_named(tmp_path):
    _image_folder(tmp_path, {"a": 2}, size=(40, 40))
    p = tmp_path / "a" / "1.png"
    p.write_bytes(p.read_bytes()[:100])
    _raises(lambda: read_folder(tmp_path), "cannot be read", "remove or replace it", path=p)


def test_folder_big_images_are_resized_while_reading(tmp_path, monkeypatch):
    y, x = np.mgrid[0:300, 0:400]
    smooth = np.stack([x * 255 // 400, y * 255 // 300, (x + y) * 255 // 700], -1).astype(np.uint8)
    for c, fmt in (("jpg", "jpeg"), ("png", "png")):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.fromarray(smooth).save(tmp_path / c / f"{i}.{fmt}")
    seen = []
    real_resize = canvas.resize
    monkeypatch.setattr(canvas, "resize", lambda X, size: seen.append(X.shape) or real_resize(X, size))
    d = read_folder(tmp_path, size=16)
    assert d.X.shape == (6, 3, 16, 16) and d.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert len(seen) == 6 and all(s[0] == 1 and max(s[2:]) <= 4 * 16 for s in seen), seen  # one small image at a time
    full = real_resize(smooth.transpose(2, 0, 1)[None].astype(np.float32) / 255, 16)[0]
    assert np.abs(d.X - full).mean() < 0.03  # reduced-scale decoding still gives the same picture


def test_folder_max_samples_are_stratified_and_chosen_before_decoding(tmp_path, monkeypatch):
    _image_folder(tmp_path, {"a": 10, "b": 10, "c": 4}, size=(8, 8))
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda f, *a, **k: opened.append(f) or real_open(f, *a, **k))
    d = read_folder(tmp_path, size=8, max_samples=12, seed=3)
    assert np.bincount(d.y).tolist() == [5, 5, 2] and len(opened) == 12
    again = read_folder(tmp_path, size=8, max_samples=12, seed=3)
    assert np.array_equal(d.X, again.X)
    other = read_folder(tmp_path, size=8, max_samples=12, seed=4)
    assert not np.array_equal(d.X, other.X)


def test_max_samples_keeps_a_class_of_one_sample(tmp_path):
    """A stratified subsample rounded a one-sample class's share to 0 and dropped it: the target was then refused
    for a class the source 'lacked', or a named class could never be predicted. A subsample keeps every class; a
    validation holdout still leaves a singleton to training."""
    from qianyi.data.domain import stratified_split

    _image_folder(tmp_path / "f", {"a": 20, "b": 20, "c": 1}, size=(8, 8))
    assert np.bincount(read_folder(tmp_path / "f", size=8, max_samples=12, seed=0).y).tolist() == [6, 6, 1]
    rng = np.random.default_rng(0)
    y = np.r_[np.repeat(np.arange(9), 60), [9]]
    np.savez(tmp_path / "s.npz", X=rng.normal(size=(len(y), 4)).astype(np.float32), y=y)
    np.savez(tmp_path / "t.npz", X=rng.normal(size=(100, 4)).astype(np.float32), y=np.arange(100) % 10)
    task = load_task(f"npz:{tmp_path / 's.npz'}", f"npz:{tmp_path / 't.npz'}", max_samples=100)
    assert 9 in np.r_[task.source.y, task.source_val.y]
    rest, val = stratified_split(y, len(y), 0.1, 0)
    assert 9 in y[rest] and 9 not in y[val]


def test_folder_greyscale_when_every_image_is_grey(tmp_path):
    _image_folder(tmp_path, {"a": 2, "b": 2}, mode="L")
    assert read_folder(tmp_path, size=8).X.shape == (4, 1, 8, 8)
    _image_folder(tmp_path, {"c": 1}, mode="RGB", seed=1)
    assert read_folder(tmp_path, size=8).X.shape == (5, 3, 8, 8)


# --- CSV -------------------------------------------------------------------------------------

def test_csv_utf8_bom_does_not_hide_the_label_column(tmp_path):
    p = tmp_path / "bom.csv"
    p.write_text("label,a,b\n1,0.5,2\n0,1.5,3\n", encoding="utf-8-sig")
    d = read_csv(p)
    assert d.y.tolist() == [1, 0] and d.X.tolist() == [[0.5, 2], [1.5, 3]] and d.feature_names == ("a", "b")


def test_csv_that_is_not_utf8_says_so(tmp_path):
    p = tmp_path / "latin.csv"
    p.write_bytes("a,label\n1,café\n".encode("latin-1"))
    _raises(lambda: read_csv(p), "not UTF-8 text", "save it as UTF-8", path=p)
    p.write_bytes(b"a,label\n" + np.random.default_rng(0).bytes(300))
    _raises(lambda: read_csv(p), "not UTF-8 text", path=p)


def test_csv_in_utf16_names_utf16_not_latin1(tmp_path):
    """Excel's 'Unicode Text' (UTF-16 with a BOM, either byte order) and UTF-16 without a BOM: the advice is to
    convert from UTF-16; latin1 (the old advice) gives a file of NUL bytes."""
    text = "a,label\n1,x\n2,y\n"
    for i, enc in enumerate(("utf-16", "utf-16-be")):
        p = tmp_path / f"u{i}.csv"
        raw = text.encode(enc)
        p.write_bytes(raw if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else b"\xfe\xff" + raw)
        msg = _raises(lambda: read_csv(p), "UTF-16", "iconv -f utf-16 -t utf-8", path=p)
        assert "latin1" not in msg, msg
    p = tmp_path / "nobom.csv"
    p.write_bytes(text.encode("utf-16-be"))
    _raises(lambda: read_csv(p), "UTF-16", "iconv -f utf-16be -t utf-8", path=p)
    p.write_bytes(text.encode("utf-16-le"))
    _raises(lambda: read_csv(p), "UTF-16", "iconv -f utf-16le -t utf-8", path=p)


def test_csv_in_cp1252_advises_cp1252_and_names_the_line(tmp_path):
    """Windows 'ANSI' text: latin1 would turn its curly quotes and euro signs (0x80-0x9F) into control characters."""
    p = tmp_path / "ansi.csv"
    p.write_bytes("text,label\nfine,0\ncaf\u00e9 \u201cquoted\u201d 5\u20ac,1\n".encode("cp1252"))
    msg = _raises(lambda: read_csv(p), "not UTF-8 text", "line 3", "iconv -f cp1252 -t utf-8", path=p)
    assert "iconv -f latin1" not in msg and "offset" not in msg, msg


#: Real reviews in five languages, each saved in its usual legacy encoding ('ANSI' on a Windows of that language)
ZH = ("评论,标签\n这本书的故事情节非常精彩，翻译也很好，我很喜欢。,正面\n质量太差了，用了两天就坏了，真后悔买了它。,负面\n"
      "物流很快，包装完整，价格也合适，值得推荐给朋友。,正面\n作者写得很无聊，浪费时间，不推荐。,负面\n")
JA = ("text,label\nこの商品はとても良いです。また買いたいと思います。,pos\n届いた時にはもう壊れていました。残念です。,neg\n"
      "値段の割に品質が高く、家族も喜んでいます。,pos\n説明書が分かりにくく、使い方が難しかった。,neg\n")
RU = ("text,label\nЭто очень хорошая книга, читается легко и с удовольствием.,pos\n"
      "Ужасное качество, сломалось через неделю. Не рекомендую.,neg\n"
      "Быстрая доставка и отличная упаковка, спасибо продавцу!,pos\n")
KO = "text,label\n이 제품 정말 좋아요! 배송도 빠르고 가격도 저렴합니다.,pos\n포장이 엉망이고 물건이 고장 났어요.,neg\n"
FR = ("text,label\nTrès déçu : l’appareil a cessé de fonctionner après une semaine.,neg\n"
      "Un roman magnifique, écrit avec beaucoup de finesse ; je le recommande à tous.,pos\n"
      "Qualité médiocre, emballage abîmé et service après-vente « inexistant ».,neg\n")


@pytest.mark.parametrize("text,codec,iconv", [(ZH, "gbk", "gb18030"), (ZH, "gb18030", "gb18030"),
                                              (JA, "shift_jis", "cp932"), (JA, "euc-jp", "euc-jp"),
                                              (KO, "euc-kr", "cp949"), (RU, "cp1251", "cp1251"),
                                              (FR, "cp1252", "cp1252")])
def test_csv_not_utf8_names_the_encoding_its_bytes_read_as(tmp_path, text, codec, iconv):
    """The advice fits the bytes: Chinese 'ANSI' converts from GB18030, not cp1252 (which gave mojibake that then
    loaded silently); the file is still refused, never decoded by guess."""
    p = tmp_path / f"{codec}.csv"
    p.write_bytes(text.encode(codec))
    msg = _raises(lambda: read_csv(p), "not UTF-8 text", "save it as UTF-8", f"iconv -f {iconv} -t utf-8 FILE > NEW", path=p)
    others = {"gb18030", "big5", "cp932", "euc-jp", "cp949", "cp1251", "cp1253", "cp1252"} - {iconv}
    assert not any(f"iconv -f {o} " in msg for o in others), msg
    assert f"encoding='{iconv}'" in msg, msg  # the Python way too (Windows has no iconv)


def test_csv_not_utf8_lists_the_candidates_when_unsure(tmp_path):
    """Two Chinese characters in GBK also read as Big5: both are named, neither asserted; bytes no encoding reads
    plausibly get 'find its encoding', not cp1252."""
    p = tmp_path / "short.csv"
    p.write_bytes("text,label\n很好,1\n".encode("gbk"))
    msg = _raises(lambda: read_csv(p), "not UTF-8 text", "iconv -f gb18030 -t utf-8", "iconv -f big5 -t utf-8",
                  path=p)
    assert "may be" in msg, msg
    p.write_bytes(b"text,label\n" + bytes(range(0x80, 0x100)) * 3 + b",1\n")
    msg = _raises(lambda: read_csv(p), "not UTF-8 text", "save it as UTF-8", "find its encoding", path=p)
    assert "iconv -f cp1252" not in msg and "iconv -f gb18030" not in msg, msg


@pytest.mark.parametrize("text", ["text,label\nworth every \u20ac,pos\ncheap,neg\n",
                                  "text,label\n\u201cgreat\u201d product,pos\nIt\u2019s great \u2013 really \u2014 ok,pos\n",
                                  "text,label\n\u20ac 5 \u2026 \u2018fine\u2019 \u2022 \u2122,pos\n"])
def test_csv_in_cp1252_with_only_punctuation_advises_cp1252(text):
    """Western 'ANSI' text whose only non-ASCII characters are cp1252's curly quotes, dashes or euro sign (bytes
    0x80-0x9F) is named cp1252, not Cyrillic (which turns € into Ђ) nor 'none of the encodings tried'."""
    msg = _not_utf8_advice(text.encode("cp1252"))
    assert "its bytes read as Western European" in msg and "iconv -f cp1252 -t utf-8" in msg, msg
    assert "cp1251" not in msg.split("(not latin1")[0] and "none of the encodings" not in msg, msg


@pytest.mark.parametrize("text", [
    "text,label\nSch\u00f6ne Gr\u00fc\u00dfe, nur 5 \u20ac \u2013 sehr gut,pos\n",
    "text,label\nTr\u00e8s cher : 12 \u20ac pour \u00ab rien \u00bb,neg\n",
    "text,label\nEl ni\u00f1o pag\u00f3 30 \u20ac, \u00a1qu\u00e9 caro!,neg\n",
    "text,label\n" + "price 5 \u20ac, " * 40 + "caf\u00e9,pos\n"])
def test_csv_in_cp1252_with_accents_and_euro_advises_cp1252(text):
    """German, French and Spanish with accents and a €, and many € around one accent: cp1252 alone."""
    msg = _not_utf8_advice(text.encode("cp1252"))
    assert "its bytes read as Western European" in msg and "iconv -f cp1251" not in msg, msg


@pytest.mark.parametrize("text,codec,named", [("作家", "big5", "big5"), ("text,label\n你,pos\n作家,neg\n", "big5", "big5"),
                                               ("ただ", "shift_jis", "cp932"), ("あいかき", "shift_jis", "cp932"),
                                               ("啊", "gbk", "gb18030")])
def test_a_short_cjk_text_whose_bytes_read_as_cp1252_symbols_keeps_its_encoding(text, codec, named):
    """A short Chinese or Japanese text's bytes read as § © ° in cp1252 (punctuation only): cp1252 was then asserted
    and the CJK reading dropped (following it turned 你 into §A); the CJK encoding stays named."""
    msg = _not_utf8_advice(text.encode(codec))
    assert f"iconv -f {named} -t utf-8" in msg, msg
    assert not msg.startswith("its bytes read as Western European"), msg


def test_csv_in_cp1251_russian_sentence_still_names_cp1251():
    """A real Russian sentence (with a dash and quotes, bytes 0x80-0x9F in cp1251 too) stays Cyrillic."""
    raw = "text,label\nКнига \u2013 «отличная», читается на одном дыхании \u2014 рекомендую!,pos\n".encode("cp1251")
    msg = _not_utf8_advice(raw)
    assert "its bytes read as Cyrillic" in msg and "iconv -f cp1251 -t utf-8" in msg, msg
    assert "iconv -f cp1252" not in msg, msg


def test_csv_one_cyrillic_letter_among_english_is_not_asserted():
    """One or two bytes that read as Cyrillic letters among English words are too few to assert Windows-1251:
    the candidates are listed (or none named) instead."""
    for text in ("text,label\nTom \u0403 Smith,pos\n", "text,label\nTom \u0403\u0436 Smith,pos\n",
                 "text,label\n" + "5 \u0402, " * 40 + "ok,pos\n"):  # 0x81 is not cp1252; 0x80 is its €
        msg = _not_utf8_advice(text.encode("cp1251"))
        assert "its bytes read as Cyrillic" not in msg, (text, msg)
    msg = _not_utf8_advice("text,label\nTom \u0403\u0436 Smith,pos\n".encode("cp1251"))
    assert "it may be Cyrillic" in msg and "iconv -f cp1251 -t utf-8" in msg and "too few to tell" in msg, msg
    msg = _not_utf8_advice("text,label\n\u0434\u0430,1\n".encode("cp1251"))  # 'да'
    assert "may be" in msg and "iconv -f cp1251 -t utf-8" in msg, msg


def test_csv_in_utf16_without_bom_holding_cjk_is_named_utf16(tmp_path):
    """UTF-16 without a BOM of Chinese or Japanese text has few NUL bytes (only its ASCII commas and line
    breaks): it is still recognised as UTF-16, with the byte order."""
    for codec, text in (("utf-16-le", ZH), ("utf-16-be", ZH), ("utf-16-le", JA)):
        p = tmp_path / f"{codec}.csv"
        p.write_bytes(text.encode(codec))
        msg = _raises(lambda: read_csv(p), "UTF-16", f"iconv -f {codec[:6] + codec[7:]} -t utf-8",
                      path=p)
        assert "cp1252" not in msg, msg


def test_csv_decimal_comma_is_named_and_not_one_hot_encoded(tmp_path):
    """A German Excel CSV: ';' separates, ',' is the decimal mark. The error says so (not 'one-hot it'), and
    categorical=auto warns when it one-hot encodes a column of numbers written with a comma."""
    from qianyi.errors import QianyiWarning

    p = tmp_path / "eu.csv"
    rows = "".join(f"{20 + i % 7};{60 + i % 5},{i % 3};{i % 2}\r\n" for i in range(30))
    p.write_bytes(("alter;gewicht;label\r\n" + rows).encode("utf-8-sig"))
    msg = _raises(lambda: read_csv(p), "'gewicht'", "decimal comma", "'.' as the decimal mark", path=p)
    assert "categorical=auto" not in msg and "?drop=gewicht" in msg, msg
    # (review diff8) a thousands separator is named too, and the advice does not say "replace ',' by '.'"
    (tmp_path / "us.csv").write_text('a,label\n"50,876",0\n"1,234",1\n')
    msg = _raises(lambda: read_csv(tmp_path / "us.csv"), "'50,876'", "thousands separator", path=tmp_path / "us.csv")
    assert "replace ','" not in msg, msg
    # categorical=auto encodes it as asked (a size "1,5" is a category), but warns, naming the column
    with pytest.warns(QianyiWarning, match=r"one-hot encodes column\(s\) \['gewicht'\].*plain numbers"):
        assert read_csv(p, categorical="auto").X.shape[0] == 30
    assert read_csv(p, categorical="gewicht").X.shape[0] == 30  # named: encoded as asked
    p.write_text("a;b;label\n1;x;0\n2;y;1\n")  # plain text categories are still auto-encoded
    assert read_csv(p, categorical="auto").feature_names == ("a", "b=x", "b=y")


def test_csv_decimal_comma_is_read_when_told(tmp_path):
    """?decimal=, (or comma) reads a European Excel export's 69,6 as 69.6; categorical=auto then takes such a column as
    numbers; a '.' (a thousands separator) is refused, as are an unknown mark and the comma separator."""
    p = tmp_path / "eu.csv"
    p.write_text("gewicht;groesse;farbe;label\n69,6;1,80;rot;a\n72;1,75;blau;b\n-0,5;1,6;rot;a\n")
    _raises(lambda: read_csv(p), "'69,6'", "?decimal=,", path=p)  # the error says the option
    for mark in (",", "comma"):
        d = read_csv(p, categorical="farbe", decimal=mark)
        np.testing.assert_allclose(d.X[:, :2], [[69.6, 1.8], [72, 1.75], [-0.5, 1.6]], rtol=1e-6)
        assert d.feature_names == ("gewicht", "groesse", "farbe=blau", "farbe=rot")
    assert read_csv(p, categorical="auto", decimal=",").feature_names == d.feature_names  # numbers, not categories
    d = load_domain(f"csv:{p}?categorical=farbe&decimal=,")  # the spec option
    np.testing.assert_allclose(d.X[0, :2], [69.6, 1.8], rtol=1e-6)
    p.write_text("gewicht;label\n1.234,5;a\n2,5;b\n")
    _raises(lambda: read_csv(p, decimal=","), "'1.234,5'", "thousands separator", "leave ?decimal= out", path=p)
    _raises(lambda: read_csv(p, decimal="x"), "decimal='x'", path=p)
    _raises(lambda: read_csv(p, decimal=",", sep=","), "?sep=,", path=p)
    p.write_text("w;h;label\n1.069,6;1,5;a\n1.070,1;1,6;b\n")  # (review diff9) auto does not one-hot them: refused
    _raises(lambda: read_csv(p, decimal=",", categorical="auto"), "'1.069,6'", "thousands separator", path=p)
    p.write_text("a;label\n1.5;a\n2;b\n")  # the default mark is unchanged
    np.testing.assert_allclose(read_csv(p).X[:, 0], [1.5, 2])


def test_csv_decimal_comma_reads_dotted_text_as_text_not_thousands_separators(tmp_path):
    """(review diff10) With ?decimal=, only '.'s between groups of three digits are thousands separators: dates
    (15.03.2021), versions (1.2.3) and IP addresses (10.0.0.1) are text, one-hot encoded by categorical=auto; in a
    numeric column they get the not-numeric error, not 'a thousands separator'."""
    p = tmp_path / "eu.csv"
    p.write_text("x;day;version;ip;label\n1,5;15.03.2021;1.2.3;10.0.0.1;a\n2,5;16.03.2021;1.10.0;10.0.0.2;b\n"
                 "3,5;15.03.2021;1.2.3;10.0.0.1;a\n")
    d = read_csv(p, sep=";", decimal=",", categorical="auto", label="label")
    assert d.feature_names == ("x", "day=15.03.2021", "day=16.03.2021", "version=1.10.0", "version=1.2.3",
                               "ip=10.0.0.1", "ip=10.0.0.2")
    np.testing.assert_allclose(d.X[:, 0], [1.5, 2.5, 3.5])
    msg = _raises(lambda: read_csv(p, sep=";", decimal=",", categorical="version,ip"), "'15.03.2021'",
                  "not numeric", path=p)
    assert "thousands separator" not in msg
    p.write_text("x;label\n-12.345.678,25;a\n2,5;b\n")  # groups of three: a thousands separator, named as one
    _raises(lambda: read_csv(p, decimal=",", categorical="auto"), "'-12.345.678,25'", "thousands separator", path=p)


def test_windows_drive_path_without_a_reader_says_how_to_write_it():
    from qianyi.errors import UnknownNameError
    with pytest.raises(UnknownNameError, match=r"Windows path.*csv:C:"):
        load_domain("C:\\data\\x.csv")
    with pytest.raises(UnknownNameError) as info:
        load_domain("zz:x.csv")
    assert "Windows" not in str(info.value)


def test_csv_nul_bytes_and_csv_errors_are_data_errors(tmp_path):
    p = tmp_path / "nul.csv"
    p.write_bytes(b"a,label\n1\x00,0\n")
    _raises(lambda: read_csv(p), "NUL", "UTF-8", path=p)
    p.write_text("a,label\n" + "1" * 200_000 + ",0\n")  # beyond the csv module's field size limit
    _raises(lambda: read_csv(p), "not a valid CSV table", path=p)


def test_csv_given_a_folder_asks_for_the_file(tmp_path):
    _raises(lambda: read_csv(tmp_path), "expects a file", "is a folder", path=tmp_path)


def test_csv_gzip_bomb_is_capped(tmp_path, monkeypatch):
    monkeypatch.setenv("QIANYI_MAX_BYTES", "1M")
    p = tmp_path / "bomb.csv.gz"
    p.write_bytes(gzip.compress(b"a,label\n" + b"0" * (3 << 20), 1))
    _raises(lambda: read_csv(p), "inflates to more than the limit of 1,048,576 bytes", "QIANYI_MAX_BYTES", path=p)


def test_csv_file_over_the_byte_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("QIANYI_MAX_BYTES", "1K")
    p = tmp_path / "big.csv"
    p.write_text("a,label\n" + "1,0\n" * 600)
    _raises(lambda: read_csv(p), "QIANYI_MAX_BYTES", path=p)


def test_csv_columns_are_read_by_name(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("zeta,label,alpha,id\n1,0,2,7\n3,1,4,8\n")
    d = read_csv(p, drop=["id"])
    assert d.feature_names == ("zeta", "alpha") and d.X.tolist() == [[1, 2], [3, 4]] and d.y.tolist() == [0, 1]
    assert read_csv(p, drop="id").feature_names == ("zeta", "alpha")
    _raises(lambda: read_csv(p, drop=["nope"]), "'nope'", "columns:", path=p)
    _raises(lambda: read_csv(p, label="nope"), "no column 'nope'", "columns:", path=p)


def test_csv_second_label_like_column_is_refused_not_leaked(tmp_path):
    p = tmp_path / "leak.csv"
    p.write_text("a,label,target\n1,0,0\n2,1,1\n")
    _raises(lambda: read_csv(p), "'label'", "'target'", "?label=NAME", "?drop=NAME", path=p)
    _raises(lambda: read_csv(p, label="label"), "'target'", "?drop=NAME", path=p)
    d = read_csv(p, label="label", drop=["target"])
    assert d.feature_names == ("a",) and d.y.tolist() == [0, 1]


def test_csv_missing_labels_are_refused(tmp_path):
    p = tmp_path / "nan.csv"
    p.write_text("a,label\n1,cat\n2,nan\n3,dog\n4,NA\n5,\n6,?\n")
    _raises(lambda: read_csv(p), "label column 'label'", "4 row(s)", "[3, 5, 6, 7]", path=p)


def test_csv_bad_feature_cell_names_its_column_and_row(tmp_path):
    p = tmp_path / "cells.csv"
    p.write_text("a,b,label\n1,2,0\n3,,1\n")
    _raises(lambda: read_csv(p), "column 'b', line 3 is empty", path=p)
    p.write_text("a,b,label\n1,2,0\n3,x,1\n")
    _raises(lambda: read_csv(p), "column 'b', line 3 holds 'x', which is not numeric", "?drop=b", path=p)


def test_csv_duplicate_column_names_are_refused(tmp_path):
    p = tmp_path / "dup.csv"
    p.write_text("a,a,label\n1,2,0\n")
    _raises(lambda: read_csv(p), "duplicate column names ['a']", path=p)


def test_csv_duplicate_column_names_of_a_wide_header_are_named_sorted_and_capped(tmp_path):
    """A wide header (a bag-of-words or one-hot export) is checked in one pass: the repeated names are said, sorted,
    at most 10 of them, each once however often it repeats; trailing empty names (a trailing comma) are no duplicate."""
    cols = [f"w{i}" for i in range(5000)]
    cols += ["w7", "w3", "w3"] + [f"w{i}" for i in range(4000, 4012)] + ["label"]
    p = tmp_path / "wide.csv"
    p.write_text(",".join(cols) + ",\n" + ",".join("1" for _ in cols) + ",\n")
    expected = sorted(["w3", "w7"] + [f"w{i}" for i in range(4000, 4012)])[:10]
    msg = _raises(lambda: read_csv(p), f"has duplicate column names {expected};", path=p)
    assert "w4011" not in msg and "''" not in msg, msg
    p.write_text(",".join(cols[:5000] + ["label"]) + ",\n" + ",".join("1" for _ in range(5001)) + ",\n")
    assert read_csv(p).X.shape == (1, 5000)


def test_csv_numeric_labels_stay_indices_and_strings_become_sorted_names(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("a,class\n1,2\n2,0.0\n3,1\n")
    d = read_csv(p)
    assert d.y.tolist() == [2, 0, 1] and d.class_names is None  # indices, as npz and JSON Lines labels
    p.write_text("a,price\n1,100.04\n2,99.5\n3,101\n")  # a regression target: named, not 3 classes
    with pytest.raises(DataError, match="regression target"):
        read_csv(p, label="price")
    p.write_text("a,class\n1,b\n2,a\n3,b\n")
    d = read_csv(p)
    assert d.y.tolist() == [1, 0, 1] and d.class_names == ("a", "b")


# --- origin ----------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:the target test split")
def test_every_reader_sets_origin_to_the_resolved_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.savez(tmp_path / "d.npz", X=np.zeros((2, 3)), y=np.array([0, 1]))
    (tmp_path / "d.csv").write_text("a,label\n1,0\n2,1\n")
    (tmp_path / "mn").mkdir()
    (tmp_path / "mn" / "t-images-idx3-ubyte").write_bytes(_idx_header(2, 2, 2) + bytes(8))
    assert read_npz("d.npz").origin == str((tmp_path / "d.npz").resolve())
    assert read_csv("d.csv").origin == str((tmp_path / "d.csv").resolve())
    assert read_idx("mn").origin == str((tmp_path / "mn").resolve())
    a = read_folder(_image_folder(tmp_path / "amazon" / "images", {"bike": 4, "mug": 4}, size=(8, 8)), size=8)
    w = read_folder(_image_folder(tmp_path / "webcam" / "images", {"bike": 3, "mug": 3}, size=(8, 8), seed=1), size=8)
    assert a.name == w.name == "images" and a.origin != w.origin
    assert w.origin == str((tmp_path / "webcam" / "images").resolve())
    # so a task pairs them as two domains instead of splitting "one pool" (which failed: sizes differ)
    task = load_task("folder:amazon/images?size=8", "folder:webcam/images?size=8", test_fraction=0.5)
    assert len(task.target) + len(task.target_test) == 6


def test_errors_are_qianyi_errors(tmp_path):
    assert issubclass(DataError, QianyiError) and issubclass(DatasetNotFoundError, QianyiError)
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        read_csv(tmp_path / "missing.csv")


def test_idx_folder_with_labels_for_some_image_files_only_is_refused(tmp_path):
    # (whether or not --max-samples stops before the unlabelled file)
    # the reader once dropped every label when one images file lacked its labels file
    for part in ("train", "t10k"):
        (tmp_path / f"{part}-images-idx3-ubyte").write_bytes(_idx_header(3, 4, 4) + bytes(48))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_header(3) + bytes([0, 1, 2]))
    with pytest.raises(DataError, match="1 of its 2 image files have a labels file"):
        read_idx(tmp_path)
    with pytest.raises(DataError, match="1 of its 2 image files have a labels file"):
        read_idx(tmp_path, max_samples=2)  # t10k (unlabelled) sorts first: only it would be read


def test_one_folder_spelt_two_ways_is_one_pool():
    from qianyi.data.tasks import _pool_key

    import os

    assert _pool_key("folder:data/office/amazon") == _pool_key("folder:data/office/amazon/?size=32")
    assert _pool_key("folder:data/office/amazon") == _pool_key(f"folder:{os.getcwd()}/data/office/amazon")
    assert _pool_key("npz:a.npz") != _pool_key("npz:b.npz") and _pool_key("mnist") == "mnist"


def test_a_file_of_plus_one_labels_paired_with_zero_one_labels_names_the_convention(tmp_path):
    from qianyi.errors import LabelMismatchError

    (tmp_path / "s.svm").write_text("".join(f"0 0:{i} 1:0.5\n1 1:{i} 2:0.1\n" for i in range(1, 9)))
    (tmp_path / "t.svm").write_text("1 1:1\n1 1:2\n1 0:0.3 1:1\n")  # only '1': read as -1/+1, i.e. 'positive'
    with pytest.raises(LabelMismatchError, match="all -1/\\+1, even one class of them"):
        load_task(f"svmlight:{tmp_path / 's.svm'}", f"svmlight:{tmp_path / 't.svm'}?n_features=3",
                  target_test=f"svmlight:{tmp_path / 't.svm'}?n_features=3")


def test_npz_images_are_scaled_alike_in_every_file(tmp_path):
    # each file was min-max scaled by its own range: the dim half of a file, read alone, came out twice as
    # bright, and a model predicted it all wrong
    rng = np.random.default_rng(0)
    full = np.concatenate([rng.uniform(0, 127, (10, 8, 8)), rng.uniform(0, 255, (10, 8, 8))]).astype(np.float32)
    np.savez(tmp_path / "full.npz", X=full)
    np.savez(tmp_path / "dim.npz", X=full[:10])
    np.savez(tmp_path / "u16.npz", X=(full * 16).astype(np.uint16))
    a, b = load_domain(f"npz:{tmp_path / 'full.npz'}").X[:10], load_domain(f"npz:{tmp_path / 'dim.npz'}").X
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a[:, 0], full[:10] / 255, rtol=1e-6)
    np.testing.assert_allclose(load_domain(f"npz:{tmp_path / 'u16.npz'}").X[:, 0], (full * 16).astype(np.uint16) / 65535,
                               rtol=1e-6)
    np.savez(tmp_path / "over.npz", X=np.clip(full / 255, 0, 1) * 1.02)  # interpolation overshoot: clipped, not /255
    assert load_domain(f"npz:{tmp_path / 'over.npz'}").X.max() == 1.0
    np.savez(tmp_path / "neg.npz", X=full - 100)
    with pytest.raises(DataError, match="values from -99.9.* to 153.*give pixels in"):
        load_domain(f"npz:{tmp_path / 'neg.npz'}")


def test_a_compressed_svmlight_file_is_inflated_only_up_to_the_limit(tmp_path, monkeypatch):
    # scikit-learn inflated it whole before any check (297 KB: 16 s and 656 MB before the refusal)
    body = "".join(f"{i % 2} 0:1 3:{i}\n" for i in range(200)).encode()
    (tmp_path / "d.svm.gz").write_bytes(gzip.compress(body))
    d = load_domain(f"svmlight:{tmp_path / 'd.svm.gz'}")
    assert d.X.shape == (200, 4)
    monkeypatch.setenv("QIANYI_MAX_BYTES", "1000")
    _raises(lambda: load_domain(f"svmlight:{tmp_path / 'd.svm.gz'}"), "inflates to more than the limit",
            path=tmp_path / "d.svm.gz")
    (tmp_path / "cut.svm.gz").write_bytes(gzip.compress(body)[:40])
    monkeypatch.delenv("QIANYI_MAX_BYTES")
    _raises(lambda: load_domain(f"svmlight:{tmp_path / 'cut.svm.gz'}"), "cannot be decompressed", path=tmp_path / "cut.svm.gz")


def test_a_header_read_as_one_column_suggests_the_separator(tmp_path):
    (tmp_path / "tab.csv").write_text("a\tb\ty\n1\t2\t0\n3\t4\t1\n")  # suggested ?categorical= on the whole line
    _raises(lambda: read_csv(tmp_path / "tab.csv"), "read as one column", "?sep=tab", path=tmp_path / "tab.csv")
    (tmp_path / "semi.csv").write_text('"a,1";b;y\n1;2;0\n3;4;1\n')
    _raises(lambda: read_csv(tmp_path / "semi.csv"), "?sep=;", path=tmp_path / "semi.csv")


def test_npz_class_names_as_bytes_and_two_channel_images(tmp_path):
    np.savez(tmp_path / "b.npz", X=np.zeros((4, 8, 8), np.uint8), y=np.array([0, 1, 0, 1]),
             class_names=np.array([b"cat", b"dog"]))  # h5py's way: were the classes "b'cat'", "b'dog'"
    assert load_domain(f"npz:{tmp_path / 'b.npz'}").class_names == ("cat", "dog")
    np.savez(tmp_path / "c2.npz", X=np.zeros((4, 2, 8, 8), np.uint8))  # failed later with a canvas error
    _raises(lambda: load_domain(f"npz:{tmp_path / 'c2.npz'}"), "2 channels", path=tmp_path / "c2.npz")


def test_npz_pixels_just_above_the_overshoot_band_are_read_as_0_255_with_a_warning(tmp_path):
    from qianyi.errors import QianyiWarning

    np.savez(tmp_path / "two.npz", X=np.linspace(0, 2, 64, dtype=np.float32).reshape(1, 8, 8))
    with pytest.warns(QianyiWarning, match="read as 0..255 pixels"):  # near-black, silently
        load_domain(f"npz:{tmp_path / 'two.npz'}")


def test_integer_labels_meet_classes_named_by_value_by_the_reading_that_fits(tmp_path):
    """SVMlight names its classes by label value ('1', '2', '3'), a CSV's whole numbers are class indices: a
    reading that alone fits is used (by position, label 1 was class '2' for a CSV of 1..3: 0-2% scored); both
    fitting and differing is refused as ambiguous (a 0-based npz subset lacking class 0 is read by position)."""
    from qianyi.data.domain import Domain, align_labels
    from qianyi.errors import LabelMismatchError

    rng = np.random.default_rng(0)
    ys = np.repeat([1, 2, 3], 20)
    (tmp_path / "s.svm").write_text("".join(f"{c} 0:{c + rng.normal(0, 0.1):.3f} 1:0.5\n" for c in ys))
    (tmp_path / "t.csv").write_text("a,b,label\n" + "".join(f"{c + rng.normal(0, 0.1):.3f},0.5,{c}\n"
                                                            for c in np.repeat([1, 2, 3], 15)))
    task = load_task(f"svmlight:{tmp_path / 's.svm'}?n_features=2", f"csv:{tmp_path / 't.csv'}",
                     target_test=f"csv:{tmp_path / 't.csv'}")
    names = task.source.class_names
    assert sorted({names[k] for k in task.target_test.y}) == ["1", "2", "3"]  # label 3 fits only by value

    def dom(y, names=None, name="d"):
        return Domain(np.zeros((len(y), 2), np.float32), np.array(y), name, class_names=names)
    mat = dom([0, 1, 2], ("1", "2", "3"), "mat")
    assert align_labels(mat, dom([3, 1])).y.tolist() == [2, 0]  # by value (3 is no position)
    assert align_labels(mat, dom([0, 1])).y.tolist() == [0, 1]  # by position (0 is no value): a 0-based file
    with pytest.raises(LabelMismatchError, match=r"ambiguous.*label 1 = class '1'.*label 1 = class '2'"):
        align_labels(mat, dom([1, 2]))  # a partial target: both readings fit
    csv_src = dom([1, 2, 3])  # CSV labels 1..3: indices, class 0 empty (by position, SVMlight's '1' was class 0)
    with pytest.raises(LabelMismatchError, match="ambiguous"):
        align_labels(csv_src, dom([0, 1, 2], ("1", "2", "3")))
    assert align_labels(dom([0, 1, 2]), dom([0, 1], ("1", "3"))).y.tolist() == [0, 1]  # '3' is no index: position
    same = dom([0, 1, 2], ("0", "1", "2"))  # names '0'..'k-1' in order: both readings agree
    assert align_labels(same, dom([2, 1])).y.tolist() == [2, 1]
    pn = dom([0, 1], ("negative", "positive"))  # names given in index order (not sorted text): by position
    assert align_labels(pn, dom([1, 0])).y.tolist() == [1, 0]
    sorted_pn = pn.replace(sorted_names=True).subset([1, 0])  # names sorted from text labels: refused, kept by both
    with pytest.raises(LabelMismatchError, match="unnamed class indices"):
        align_labels(sorted_pn, dom([1, 0]))


def test_text_class_names_against_unnamed_indices_are_refused_not_matched_by_position(tmp_path):
    """Integer labels on one side, text names on the other: by position the sorted names ('eight' = 0, ...) were
    read as indices and a 98% model scored 10%; refused both ways, naming both specs and both label sets. Names
    written as whole numbers ('0.0'..'9.0') still read as indices."""
    from qianyi.errors import LabelMismatchError

    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    rng = np.random.default_rng(0)

    def write(name, labels):
        (tmp_path / name).write_text("a,b,label\n" + "".join(f"{rng.normal():.3f},{rng.normal():.3f},{c}\n"
                                                             for c in labels))
        return f"csv:{tmp_path / name}"
    ints, text = write("s.csv", list(range(10)) * 4), write("t.csv", words * 4)
    with pytest.raises(LabelMismatchError) as err:
        load_task(ints, text)
    msg = str(err.value)
    assert "target" in msg and "t.csv" in msg and "'eight'" in msg and "source" in msg and "s.csv" in msg
    assert "0..9" in msg
    with pytest.raises(LabelMismatchError, match=r"source .*s2\.csv.* names its classes .*target .*t2\.csv"):
        load_task(write("s2.csv", words * 4), write("t2.csv", list(range(10)) * 4))
    floats = write("t3.csv", [f"{c}.0" for c in range(10)] * 4)
    task = load_task(ints, floats, target_test=floats)
    assert sorted(set(task.target_test.y.tolist())) == list(range(10))


def test_names_in_a_canonical_class_order_meet_unnamed_indices_by_position(tmp_path):
    """Only names made by sorting text labels are refused against indices: a built-in's names are in the
    dataset's own index order (Fashion-MNIST t-shirt/top = 0, ...; amazon negative = 0, positive = 1), so an
    npz of Fashion-MNIST indices or a CSV of 0/1 reviews pairs with them by position."""
    from qianyi.data.domain import Domain

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 20)
    np.savez(tmp_path / "idx.npz", X=rng.random((len(y), 1, 28, 28)).astype(np.float32), y=y)
    try:
        task = load_task("fashion", f"npz:{tmp_path / 'idx.npz'}", max_samples=200)
    except DatasetNotFoundError as exc:
        pytest.skip(f"Fashion-MNIST not installed: {exc}")
    assert task.source.class_names[:2] == ("t-shirt/top", "trouser") and not task.source.sorted_names
    assert task.target_test.class_names == task.source.class_names
    assert sorted(set(task.target_test.y.tolist())) == list(range(10))
    assert Domain(np.zeros((2, 1), np.float32), np.array([0, 1]), class_names=("b", "a")).sorted_names is False
    from types import SimpleNamespace

    from qianyi.errors import LabelMismatchError
    from qianyi.train.artefact import _to_model_classes

    npz = Domain(np.zeros((2, 1), np.float32), np.array([1, 0]), "npz")
    model = SimpleNamespace(class_names=task.source.class_names, meta={}, path="m")  # an older model.json
    with pytest.raises(LabelMismatchError, match="unnamed class indices.*does not record"):
        _to_model_classes(model, npz)
    model.meta["class_names_sorted"] = False  # as model.json now records it: by position, as the run matched them
    assert _to_model_classes(model, npz).y.tolist() == [1, 0]


@requires_data("amazon-blitzer2007-raw/books")
def test_amazon_against_a_csv_of_0_1_reviews_by_position(tmp_path):
    """readers._csv_labels' own example: a CSV target of 0/1 reviews pairs with amazon/books' negative/positive."""
    rows = [("great product loved it", 1), ("terrible waste of money", 0), ("works well very happy", 1),
            ("broke after a day awful", 0), ("excellent value would buy again", 1), ("poor quality do not buy", 0)]
    (tmp_path / "rev.csv").write_text("text,label\n" + "".join(f"{t},{c}\n" for t, c in rows))
    spec = f"csv:{tmp_path / 'rev.csv'}?text=text"
    task = load_task("amazon/books", spec, max_samples=100, test_fraction=0.5)
    names = task.source.class_names
    assert names == ("negative", "positive") and task.target_test.class_names == names
    from qianyi.data.domain import align_labels

    aligned = align_labels(load_domain("amazon/books"), load_domain(spec))
    assert [aligned.class_names[k] for k in aligned.y] == [names[c] for _, c in rows]  # 0 = negative, 1 = positive
    words = tmp_path / "words.csv"  # the same reviews labelled neg/pos: names on both sides, matched by name
    words.write_text("text,label\n" + "".join(f"{t},{'positive' if c else 'negative'}\n" for t, c in rows))
    assert load_task("amazon/books", f"csv:{words}?text=text", max_samples=100).target.class_names == names


def test_csv_unnamed_columns_pandas_index_and_trailing_commas(tmp_path):
    from qianyi.errors import QianyiWarning

    body = "".join(f"{i},{i % 3}.5,{i * 0.1:.1f},{i % 2}\n" for i in range(12))
    (tmp_path / "ix.csv").write_text(",a,b,label\n" + body)  # df.to_csv(path): the index first, unnamed
    with pytest.warns(QianyiWarning, match="pandas' index"):
        d = read_csv(tmp_path / "ix.csv")
    assert d.feature_names == ("a", "b")
    trailing = "a,b,label,\n" + "".join(line.split(",", 1)[1].rstrip("\n") + ",\n" for line in body.splitlines(True))
    (tmp_path / "trail.csv").write_text(trailing)
    assert read_csv(tmp_path / "trail.csv").feature_names == ("a", "b")
    (tmp_path / "mid.csv").write_text("a,,label\n" + "".join(f"{i}.5,{i},{i % 2}\n" for i in range(12)))
    with pytest.warns(QianyiWarning, match=r"column 2 has no name.*\?drop=#2"):
        assert read_csv(tmp_path / "mid.csv").feature_names == ("a", "#2")
    assert read_csv(tmp_path / "mid.csv", drop="#2").feature_names == ("a",)
    assert load_domain(f"csv:{tmp_path / 'mid.csv'}?drop=#2").feature_names == ("a",)


def test_csv_gzip_is_recognised_by_content(tmp_path):
    (tmp_path / "DATA.CSV.GZ").write_bytes(gzip.compress(b"a,label\n1,0\n2,1\n3,0\n"))
    (tmp_path / "plain").write_bytes(gzip.compress(b"a,label\n1,0\n2,1\n3,0\n"))
    assert len(read_csv(tmp_path / "DATA.CSV.GZ")) == 3 and len(read_csv(tmp_path / "plain")) == 3


def test_a_folder_of_images_alone_is_an_unlabelled_domain_and_empty_classes_are_warned(tmp_path):
    from qianyi.errors import QianyiWarning

    _image_folder(tmp_path / "lab", {"a": 3, "b": 3, "empty": 0})
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(tmp_path / "lab" / "loose.png")
    with pytest.warns(QianyiWarning) as seen:
        d = read_folder(tmp_path / "lab", size=8)
    said = " ".join(str(w.message) for w in seen)
    assert "['empty'] hold no images" in said and "beside its class sub-folders" in said and len(d) == 6
    _image_folder(tmp_path / "flat_parent", {"x": 4})
    flat = read_folder(tmp_path / "flat_parent" / "x", size=8)  # the images themselves, no class folders
    assert flat.y is None and len(flat) == 4 and flat.class_names is None
    assert len(read_folder(tmp_path / "flat_parent" / "x", size=8, max_samples=2)) == 2
    task = load_task(f"folder:{tmp_path / 'lab'}?size=8", f"folder:{tmp_path / 'flat_parent' / 'x'}?size=8")
    assert task.target.y is None and task.target_test is None


@pytest.mark.parametrize("text, words", [
    ("1.5,2.0,0\n1.0,2.5,1\n", "is all numbers and names no label column"),
    ("a,b,label\n1,NA,0\n2,3,1\n", "column 'b', line 2 holds 'NA', a missing"),
    ("a,b,label\n1,nan,0\n2,3,1\n", "column 'b', line 2 holds 'nan', a missing"),
    ("a,b,label\n1,2,-1\n2,3,1\n", "holds negative numbers"),
])
def test_csv_valid_looking_files_get_errors_that_point_the_right_way(tmp_path, text, words):
    (tmp_path / "f.csv").write_text(text)
    with pytest.raises(DataError, match=words):
        read_csv(tmp_path / "f.csv")


def test_csv_header_of_column_numbers_reads_with_a_named_label_and_old_empty_names_are_explained(tmp_path):
    from qianyi.data.domain import Domain
    from qianyi.data.tasks import match_features

    (tmp_path / "num.csv").write_text("0,1,2\n1.5,2.5,0\n0.5,1.5,1\n")  # pd.DataFrame(arr).to_csv(index=False)
    assert read_csv(tmp_path / "num.csv", label="2").feature_names == ("0", "1")
    with pytest.raises(DataError, match=r"\?label=2"):
        read_csv(tmp_path / "num.csv")
    new = Domain(np.zeros((2, 2), np.float32), None, "t", feature_names=("a", "#2"))
    with pytest.raises(DataError, match="empty name.*retrain"):  # a model trained before '#K' names
        match_features(("a", ""), new, "the model's inputs")


@pytest.mark.parametrize("text", ['f0,f1,label\r1,"x\ny",0\r3,4,1\r5,6,0\r7,8,1\r',  # Excel's Mac CSV, a quoted LF
                                  'f0,f1,label\r1,2,0\r3,4,1\n5,6,0\n7,8,1\n'])  # two files' endings mixed
def test_csv_with_bare_carriage_returns_reads_as_a_file_would(tmp_path, text):
    import csv
    import io

    from qianyi.data.readers import _lines

    assert list(csv.reader(_lines(text))) == list(csv.reader(io.StringIO(text, newline="")))
    (tmp_path / "f.csv").write_text(text, newline="")
    assert len(read_csv(tmp_path / "f.csv", categorical="f1")) == 4


def test_rgba_images_lose_their_alpha_in_either_layout_and_a_colour_pair_stays_colour(tmp_path):
    """(n, 4, h, w) kept its alpha: the pair's canvas became 4 channels and the other (RGB) domain was averaged
    to grey, then refused with advice to use load_task (review s39)."""
    import qianyi
    from qianyi.data.readers import to_nchw

    rng = np.random.default_rng(0)
    rgba_first = rng.random((30, 4, 12, 12)).astype(np.float32)
    last = to_nchw(rgba_first.transpose(0, 2, 3, 1), "last")
    np.testing.assert_array_equal(to_nchw(rgba_first, "first"), last)
    assert last.shape == (30, 3, 12, 12)
    np.savez(tmp_path / "rgba.npz", X=rgba_first, y=np.arange(30) % 3)
    np.savez(tmp_path / "rgb.npz", X=rng.random((30, 3, 12, 12)).astype(np.float32), y=np.arange(30) % 3)
    task = qianyi.load_task(f"npz:{tmp_path / 'rgba.npz'}", f"npz:{tmp_path / 'rgb.npz'}")
    assert task.source.X.shape[1:] == task.target.X.shape[1:] == (3, 12, 12)
    np.savez(tmp_path / "five.npz", X=rng.random((30, 5, 12, 12)).astype(np.float32), y=np.arange(30) % 3)
    with pytest.raises(DataError, match="images of 3 channels and the pair's canvas 5|images of 5 channels"):
        qianyi.load_task(f"npz:{tmp_path / 'five.npz'}", f"npz:{tmp_path / 'rgb.npz'}")
