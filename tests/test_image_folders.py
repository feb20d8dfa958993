"""Image folders as users bring them: phone photos (EXIF orientation), transparency, unusual extensions,
thumbnail and hidden sub-folders, linked sub-folders, class names spelt two ways (review images)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from qianyi.data.readers import read_folder
from qianyi.errors import QianyiWarning


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
