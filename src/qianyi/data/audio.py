"""Audio domains: wav files as log-mel spectrogram images, the built-in ``fsdd`` and the reader ``wav:DIR``.

Every recording becomes a single-channel image ``(1, N_MELS, FRAMES)`` with values in [0, 1], so the
image backbones (LeNet, ResNet) and every adaptation method read it as they read MNIST. The recipe
(numpy/scipy only, no audio library):

1. read the wav (:func:`scipy.io.wavfile.read`; 8/16/32-bit PCM or float, mono or multi-channel,
   channels averaged), scale to [-1, 1], resample to :data:`SAMPLE_RATE` (8 kHz, the rate of FSDD and of
   telephone speech; :func:`scipy.signal.resample_poly`) when the file has another rate;
2. short-time power spectrum: Hann window of :data:`WINDOW` samples (64 ms), hop :data:`HOP` samples
   (32 ms, 50% overlap), no centre padding (a clip shorter than a window is zero-padded to one window);
3. :data:`N_MELS` triangular mel filters (HTK mel scale ``2595 log10(1 + f / 700)``) from :data:`FMIN` Hz
   to the Nyquist frequency, filters of unit height interpolated between FFT bins;
4. decibels, ``10 log10(mel power + 1e-10)``, clipped to the :data:`TOP_DB` (80 dB) below the clip's
   loudest cell, then mapped linearly to [0, 1] (0 = silence, 1 = the clip's peak), so the gain of a
   microphone does not matter;
5. a fixed number of frames, :data:`FRAMES` (32 frames = 1.06 s), by **centring**: a shorter clip is
   padded with silence (0) on both sides, a longer one keeps its middle. 99.5% of FSDD's recordings
   (median 0.42 s, longest 2.28 s) fit whole.

Row 0 of the image is the lowest mel band; column 0 the earliest frame. 32 x 32 is square, so a
pair with MNIST (28 x 28) is brought to one canvas by a plain resize (docs/data.md), not padding.
"""
from __future__ import annotations

import io
import re
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DataError, DatasetNotFoundError
from .builtin import DIGIT_NAMES, data_folder, dataset, name_list
from .domain import Domain
from .limits import max_bytes
from .readers import _listable, _readable

SAMPLE_RATE = 8000
WINDOW = 512
HOP = 256
#: Frames transformed at once by :func:`log_mel` (about 8 MiB of spectrum).
MEL_CHUNK = 2048
N_MELS = 32
FRAMES = 32
FMIN = 20.0
TOP_DB = 80.0

FSDD_FOLDER = "fsdd"
#: FSDD's speakers, in the order of its metadata file (speakers-metadata.py.txt), with their accents.
FSDD_SPEAKERS = {"jackson": "USA/neutral", "nicolas": "BEL/French", "theo": "USA/neutral",
                 "yweweler": "DEU/German", "george": "GRC/Greek", "lucas": "DEU/German"}
#: FSDD's own test convention (its README): takes 0-4 of every speaker and digit are the test set.
FSDD_TEST_TAKES = range(0, 5)
#: Each of FSDD's speakers recorded every digit this many times (takes 0-49): 6 x 10 x 50 = 3,000 files.
FSDD_TAKES = 50
TAKES = ("all", "train", "test")
_FSDD_NAME = re.compile(r"(\d)_([A-Za-z]+)_(\d+)\.wav")


def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int = SAMPLE_RATE, n_fft: int = WINDOW, n_mels: int = N_MELS,
                   fmin: float = FMIN, fmax: float | None = None) -> np.ndarray:
    """Triangular mel filters ``(n_mels, n_fft // 2 + 1)``: filter m rises from mel point m to m+1 and falls
    to m+2 (``n_mels + 2`` points evenly spaced on the HTK mel scale between ``fmin`` and ``fmax``)."""
    fmax = sample_rate / 2 if fmax is None else fmax
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rise = (freqs[None] - lo) / (mid - lo)
    fall = (hi - freqs[None]) / (hi - mid)
    return np.clip(np.minimum(rise, fall), 0.0, None)


def log_mel(signal: np.ndarray, frames: int = FRAMES) -> np.ndarray:
    """A mono signal at :data:`SAMPLE_RATE` (floats in [-1, 1]) -> its log-mel image ``(N_MELS, frames)`` in
    [0, 1] (the recipe of the module docstring)."""
    x = np.asarray(signal, np.float64)
    if len(x) < WINDOW:
        x = np.pad(x, (0, WINDOW - len(x)))
    n = 1 + (len(x) - WINDOW) // HOP
    window = np.hanning(WINDOW + 2)[1:-1]
    mel = np.empty((n, N_MELS))
    for a in range(0, n, MEL_CHUNK):  # a long recording is framed a chunk at a time: memory stays small
        idx = np.arange(WINDOW)[None] + HOP * np.arange(a, min(n, a + MEL_CHUNK))[:, None]
        mel[a:a + len(idx)] = (np.abs(np.fft.rfft(x[idx] * window, axis=1)) ** 2) @ _FILTERS.T  # (frames, N_MELS)
    db = 10.0 * np.log10(mel + 1e-10)  # (n, N_MELS)
    img = np.clip((db - (db.max() - TOP_DB)) / TOP_DB, 0.0, 1.0).T  # (N_MELS, n)
    out = np.zeros((img.shape[0], frames), np.float32)
    if not np.any(x):  # digital silence: nothing above the floor (else it would map to 1 everywhere)
        return out
    if n <= frames:
        start = (frames - n) // 2
        out[:, start:start + n] = img
    else:
        start = (n - frames) // 2
        out[:] = img[:, start:start + frames]
    return out


_FILTERS = mel_filterbank()


#: Data-chunk sizes left in the header by a writer that could not seek back (``ffmpeg ... -f wav - > x.wav``).
SIZE_PLACEHOLDERS = (0, 0xFFFFFFFF)


def _streamed(path: Path) -> bytes | None:
    """The wav's bytes with its sizes filled in when its data chunk declares a size placeholder
    (:data:`SIZE_PLACEHOLDERS`): the samples of such a file run to the end of the file, which is complete
    (a trailing partial frame is dropped; the RIFF size, a placeholder too, is set to match). None otherwise."""
    import struct

    with open(path, "rb") as fh:
        if fh.read(12)[8:12] != b"WAVE":
            return None
        align = 0
        while len(head := fh.read(8)) == 8:
            chunk, size = head[:4], struct.unpack("<I", head[4:])[0]
            if chunk == b"data":
                if size not in SIZE_PLACEHOLDERS or align <= 0:  # no fmt before the data: scipy names that
                    return None
                at = fh.tell()
                samples = fh.read()
                size = len(samples) // align * align
                fh.seek(0)
                header = fh.read(at)
                return (header[:4] + struct.pack("<I", at + size - 8) + header[8:at - 4] + struct.pack("<I", size)
                        + samples[:size])
            if chunk == b"fmt ":
                fmt = fh.read(size)
                align = struct.unpack("<H", fmt[12:14])[0] if len(fmt) >= 14 else 0
                fh.seek(size % 2, 1)
            else:
                fh.seek(size + size % 2, 1)
    return None


def read_wav(path: str | Path) -> np.ndarray:
    """One wav file -> mono float64 samples in [-1, 1] at :data:`SAMPLE_RATE` (resampled when needed).

    Unreadable or empty files raise :class:`DataError` naming the file."""
    from scipy.io import wavfile
    from scipy.signal import resample_poly

    path = Path(path)
    limit = max_bytes()
    if path.is_file() and path.stat().st_size > limit:
        raise DataError(f"{path}: the wav file is {path.stat().st_size:,} bytes, more than the limit of {limit:,} bytes "
                        "(QIANYI_MAX_BYTES); only its middle second is used: cut it, or raise QIANYI_MAX_BYTES")

    def parse(source: Path | io.BytesIO) -> tuple[int, np.ndarray, list[warnings.WarningMessage]]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rate, data = wavfile.read(source)
        return rate, np.asarray(data), caught

    try:
        streamed = None
        try:
            rate, data, caught = parse(path)
        except FileNotFoundError:
            raise
        except Exception:  # a RIFF size placeholder of 0: scipy reads no chunk
            if (streamed := _streamed(path)) is None:
                raise
        else:  # the header is only read again when scipy found no samples or fewer than declared
            if data.size == 0 or any("EOF prematurely" in str(w.message) for w in caught):
                streamed = _streamed(path)
        if streamed is not None:  # size placeholders (a streamed file): its samples run to the end of the file
            rate, data, caught = parse(io.BytesIO(streamed))
    except FileNotFoundError:
        raise DatasetNotFoundError(f"{path}: no such wav file") from None
    except Exception as exc:  # scipy's parser fails in many ways on a broken header (even UnboundLocalError)
        raise DataError(f"{path}: not a readable wav file ({exc}); re-export it as PCM wav or remove it") from None
    for w in caught:
        if not issubclass(w.category, wavfile.WavFileWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        elif "EOF prematurely" in str(w.message):  # a cut file, read as a short clip
            raise DataError(f"{path}: the wav file is truncated ({str(w.message).rstrip('.')}; it has "
                            f"{path.stat().st_size:,} bytes): restore or re-export it, or remove it")
        # other WavFileWarnings: an unknown or incomplete chunk after the samples, which are whole: harmless
    if data.ndim not in (1, 2) or len(data) == 0:
        raise DataError(f"{path}: the wav file holds no samples; remove it")
    kind, bits = data.dtype.kind, data.dtype.itemsize * 8  # scaled by the file's sample type, channels then averaged
    if kind == "u":  # 8-bit PCM is unsigned, centred on 128
        x = (data.astype(np.float64) - 2 ** (bits - 1)) / 2 ** (bits - 1)
    elif kind == "i":
        x = data.astype(np.float64) / 2 ** (bits - 1)
    else:
        x = data.astype(np.float64)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if not np.isfinite(x).all():
        raise DataError(f"{path}: the wav file holds NaN or inf samples; re-export it")
    if rate <= 0:
        raise DataError(f"{path}: the wav header gives a sample rate of {rate} Hz")
    if rate != SAMPLE_RATE:
        g = np.gcd(int(rate), SAMPLE_RATE)
        x = resample_poly(x, SAMPLE_RATE // g, int(rate) // g)
    return x


def wav_features(paths: Sequence[str | Path]) -> np.ndarray:
    """Log-mel images ``(n, 1, N_MELS, FRAMES)`` of wav files."""
    out = np.empty((len(paths), 1, N_MELS, FRAMES), np.float32)
    for i, p in enumerate(paths):
        out[i, 0] = log_mel(read_wav(p))
    return out


#: Number of cepstral coefficients per frame in the ``mfcc`` view.
N_MFCC = 13
#: A frame whose mean level (in the [0, 1] log-mel scale) exceeds this is speech, not the padding or a pause.
ACTIVE_LEVEL = 0.2
#: The vector views of a recording (``fsdd?views=``), with their widths.
AUDIO_VIEWS = {"mel": N_MELS * FRAMES, "mfcc": 4 * N_MFCC}


def mfcc_stats(images: np.ndarray) -> np.ndarray:
    """Log-mel images ``(n, 1, N_MELS, FRAMES)`` -> MFCC statistics ``(n, 4 * N_MFCC)``, a summary of each
    recording that forgets when things were said.

    Per frame, the first :data:`N_MFCC` coefficients of the orthonormal DCT-II of the log-mel column
    (the mel-frequency cepstrum); over the active frames (mean level > :data:`ACTIVE_LEVEL`; all frames
    when fewer than two are active): the coefficients' mean and standard deviation, and the mean and
    mean absolute value of their frame-to-frame differences (deltas). Columns are grouped in that order.
    """
    from scipy.fft import dct

    x = np.asarray(images, np.float64).reshape(len(images), N_MELS, -1)
    cep = dct(x, type=2, axis=1, norm="ortho")[:, :N_MFCC]  # (n, N_MFCC, frames)
    out = np.empty((len(x), 4 * N_MFCC), np.float32)
    for i in range(len(x)):
        active = x[i].mean(0) > ACTIVE_LEVEL
        c = cep[i][:, active] if active.sum() >= 2 else cep[i]
        delta = np.diff(c, axis=1)
        out[i] = np.concatenate([c.mean(1), c.std(1), delta.mean(1), np.abs(delta).mean(1)])
    return out


def audio_views(images: np.ndarray, views: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Log-mel images -> the named vector ``views`` side by side, in that order, and their column names
    ``VIEW_J`` (``mel_0`` ... ``mel_1023``: the log-mel image flattened band by band; ``mfcc_0`` ...
    ``mfcc_51``: :func:`mfcc_stats`)."""
    parts, names = [], []
    for v in views:
        block = images.reshape(len(images), -1).astype(np.float32) if v == "mel" else mfcc_stats(images)
        parts.append(block)
        names += [f"{v}_{j}" for j in range(block.shape[1])]
    return np.concatenate(parts, 1), names


def _parse_views(views: str) -> list[str]:
    return name_list("fsdd?views", views, list(AUDIO_VIEWS), "view",
                     f"the views are {', '.join(AUDIO_VIEWS)} (comma-separated, in the order wanted)")


# ---------------------------------------------------------------- FSDD
def _fsdd_files(root: Path | None) -> list[tuple[Path, int, str, int]]:
    """(path, digit, speaker, take) of every FSDD recording, sorted by speaker, digit, take."""
    folder = data_folder(root, f"{FSDD_FOLDER}/recordings", "fsdd",
                         f"{FSDD_FOLDER}/recordings/*.wav (see its SOURCE.md)")
    _listable(folder, "fsdd: the data folder")  # (glob finds nothing in a folder it may not list: said, not "no .wav")
    files = []
    for p in folder.glob("*.wav"):
        m = _FSDD_NAME.fullmatch(p.name)
        if m is None:
            raise DataError(f"fsdd: {p.name} is not named DIGIT_SPEAKER_TAKE.wav; remove or rename it")
        files.append((p, int(m.group(1)), m.group(2), int(m.group(3))))
    if not files:
        raise DatasetNotFoundError(f"fsdd: {folder} holds no .wav files")
    order = {s: i for i, s in enumerate(FSDD_SPEAKERS)}
    return sorted(files, key=lambda f: (order.get(f[2], len(order)), f[2], f[1], f[3]))


def _check_fsdd_complete(files: Sequence[tuple[Path, int, str, int]], names: Sequence[str], every: bool,
                         folder: Path) -> None:
    """Refuse an incomplete copy of FSDD: each of FSDD's own speakers among ``names`` must have takes 0-49 of
    every digit, no more and no fewer, and ``every`` (speaker=all) needs all six when any of them is present.
    Speakers that are not FSDD's (recordings added to the folder) are read as they are."""
    present = {f[2] for f in files}
    hint = f"restore {folder} from its SOURCE.md ({folder.parent / 'SOURCE.md'}; FSDD holds 6 speakers x 10 digits x " \
           f"{FSDD_TAKES} takes)"
    absent = [s for s in FSDD_SPEAKERS if s not in present]
    if every and absent and present & set(FSDD_SPEAKERS):
        raise DataError(f"fsdd: {folder} holds no recordings of {', '.join(absent)}; {hint}")
    expected = {(d, t) for d in range(len(DIGIT_NAMES)) for t in range(FSDD_TAKES)}
    for speaker in names:
        if speaker not in FSDD_SPEAKERS:
            continue
        have = {(f[1], f[3]) for f in files if f[2] == speaker}
        missing, extra = sorted(expected - have), sorted(have - expected)
        if missing:
            raise DataError(f"fsdd: {folder} lacks {len(missing)} of the {len(expected)} recordings of {speaker} (e.g. "
                            + ", ".join(f"{d}_{speaker}_{t}.wav" for d, t in missing[:3]) + f"); {hint}")
        if extra:
            raise DataError(f"fsdd: {folder} holds {len(extra)} recording(s) of {speaker} that FSDD has not (e.g. "
                            + ", ".join(f"{d}_{speaker}_{t}.wav" for d, t in extra[:3]) + f"; takes are 0-"
                            f"{FSDD_TAKES - 1}); remove them, or read your own recordings with wav:DIR")


def _parse_speakers(speaker: str, present: Sequence[str]) -> list[str]:
    if speaker == "all":
        return list(present)
    return name_list("fsdd?speaker", speaker, present, "speaker",
                     f"the speakers are {', '.join(present)} (comma-separated, or all)")


@dataset("fsdd", "Free Spoken Digit Dataset: 3,000 spoken digits (8 kHz wav, 6 speakers) from DATA/fsdd as 1x32x32 "
         "log-mel images; ?speaker=NAME[,NAME] (speakers as domains) &takes=all|train|test (takes 0-4: test) "
         "&views=mel,mfcc (vectors instead: the image flattened, MFCC statistics; for cotrain)",
         options=("speaker", "takes", "views"))
def load_fsdd(root: Path | None, speaker: str = "all", takes: str = "all", views: str = "") -> Domain:
    """The recordings of ``speaker`` (comma-separated names, or ``all``) and ``takes``, as log-mel images, or
    with ``views`` as vectors: the named views side by side (:func:`audio_views`)."""
    if takes not in TAKES:
        raise DataError(f"fsdd?takes={takes}: takes must be one of {', '.join(TAKES)} (test = takes 0-4, FSDD's own "
                        "test convention; train = takes 5-49)")
    files = _fsdd_files(root)
    present = list(dict.fromkeys(f[2] for f in files))
    names = _parse_speakers(speaker, present)
    _check_fsdd_complete(files, names, speaker == "all", files[0][0].parent)
    keep = [f for f in files if f[2] in names
            and (takes == "all" or (f[3] in FSDD_TEST_TAKES) == (takes == "test"))]
    view_names = _parse_views(views) if views else []
    X = wav_features([f[0] for f in keep])
    feature_names = None
    if view_names:
        X, feature_names = audio_views(X, view_names)
    spec = f"fsdd?speaker={','.join(names) if speaker != 'all' else 'all'}"
    spec += f"&takes={takes}" if takes != "all" else ""
    spec += f"&views={','.join(view_names)}" if view_names else ""
    # speakers (and take ranges) hold disjoint recordings: each selection is its own pool. Overlapping
    # selections (speaker=a,b against speaker=b) would share recordings: docs/audio.md says to avoid them.
    origin = f"fsdd:{','.join(sorted(names))}:{takes}"
    return Domain(X, np.array([f[1] for f in keep]), name=spec, class_names=DIGIT_NAMES, origin=origin,
                  feature_names=feature_names)


def fsdd_speakers(root: Path | None) -> list[tuple[str, int]]:
    """The speakers present in ``root/fsdd/recordings`` with their number of recordings."""
    counts: dict[str, int] = {}
    for f in _fsdd_files(root):
        counts[f[2]] = counts.get(f[2], 0) + 1
    return list(counts.items())


# ---------------------------------------------------------------- wav:DIR
def _wavs(folder: Path) -> list[Path]:
    """The wav files in ``folder``, sorted; ``.WAV`` and ``.Wav`` too (recorders write upper case)."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".wav" and p.is_file())


@_readable
def read_wav_folder(path: str | Path, name: str | None = None) -> Domain:
    """A folder of wav files -> a :class:`Domain` of log-mel images.

    Labels: when ``path`` has sub-folders that hold ``.wav`` files, each sub-folder is a class (its
    name; files directly in ``path`` are then refused); otherwise the label of ``a_b_c.wav`` is the
    text before its first ``_`` (FSDD's ``7_jackson_32.wav`` -> class ``7``). Class names are sorted
    (numerically when all are whole numbers, so ``10`` follows ``9``).
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DatasetNotFoundError(f"wav:{path}: no such folder; give a folder of .wav files (labels from the file "
                                   "name prefix LABEL_*.wav, or one sub-folder per class)")
    subdirs = sorted(d for d in folder.iterdir() if d.is_dir() and _wavs(d))
    top = _wavs(folder)
    if subdirs:
        if top:
            raise DataError(f"wav:{path}: holds both class sub-folders ({subdirs[0].name}, ...) and .wav files at the "
                            f"top ({top[0].name}, ...); use one layout")
        items = [(p, d.name) for d in subdirs for p in _wavs(d)]
    else:
        if not top:
            raise DataError(f"wav:{path}: no .wav files in the folder or its sub-folders")
        items = []
        for p in top:
            label, sep, _ = p.stem.partition("_")
            if not sep or not label:
                raise DataError(f"wav:{path}: {p.name} has no LABEL_ prefix; name files LABEL_anything.wav, or put "
                                "them in one sub-folder per class")
            items.append((p, label))
    labels = sorted({lab for _, lab in items}, key=lambda s: (0, int(s), s) if s.isdigit() else (1, 0, s))
    index = {lab: i for i, lab in enumerate(labels)}
    X = wav_features([p for p, _ in items])
    return Domain(X, np.array([index[lab] for _, lab in items]), name=name or folder.name, class_names=tuple(labels),
                  origin=f"wav:{folder.resolve()}", ids=tuple(p.relative_to(folder).as_posix() for p, _ in items),
                  sorted_names=True)
