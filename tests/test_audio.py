"""Audio domains: log-mel images of wav files, the built-in ``fsdd`` and the reader ``wav:DIR``."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.io import wavfile

import qianyi
from qianyi.data import audio
from qianyi.errors import DataError, DatasetNotFoundError, UnknownNameError

from .conftest import DATA, requires_data

SPEAKERS = ("alice", "bob", "carol")
TAKES = 6  # takes 0-4 are the test set, take 5 is training


def _tone(freq: float, seconds: float = 0.3, rate: int = audio.SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(seed).normal(0, 0.01, len(t))
    return (0.5 * np.sin(2 * np.pi * freq * t) + noise).clip(-1, 1)


def _write(path, signal: np.ndarray, rate: int = audio.SAMPLE_RATE) -> None:
    wavfile.write(path, rate, (signal * 32767).astype(np.int16))


@pytest.fixture(scope="module")
def fsdd_root(tmp_path_factory):
    """A miniature FSDD: 3 speakers x 3 digits x 6 takes, digit d a tone of 300 (d + 1) Hz."""
    root = tmp_path_factory.mktemp("data")
    rec = root / "fsdd" / "recordings"
    rec.mkdir(parents=True)
    for s, speaker in enumerate(SPEAKERS):
        for digit in range(3):
            for take in range(TAKES):
                _write(rec / f"{digit}_{speaker}_{take}.wav", _tone(300 * (digit + 1) + 20 * s, seed=take))
    return root


def test_log_mel_shape_range_and_tone_position():
    low, high = audio.log_mel(_tone(300)), audio.log_mel(_tone(2500))
    assert low.shape == high.shape == (audio.N_MELS, audio.FRAMES) and low.dtype == np.float32
    assert 0 <= low.min() and low.max() == pytest.approx(1.0)
    # the loudest band follows the tone's frequency (row 0 = lowest band)
    assert low.mean(1).argmax() < high.mean(1).argmax()
    # a 0.3 s clip (8 frames) is centred in the 32 frames: silence (0) on both sides
    assert low[:, 0].max() == 0 and low[:, -1].max() == 0 and low[:, audio.FRAMES // 2].max() > 0.5


def test_log_mel_long_clip_is_cropped_to_its_middle_and_silence_is_zero():
    assert audio.log_mel(_tone(500, seconds=3.0)).shape == (audio.N_MELS, audio.FRAMES)
    assert audio.log_mel(_tone(500, seconds=3.0))[:, 0].max() > 0  # no padding needed
    # the crop is the middle second: 300 Hz, then 2.5 kHz in the middle second, then 300 Hz again
    low, high = _tone(300, seconds=1.0), _tone(2500, seconds=1.0)
    img = audio.log_mel(np.concatenate([low, high, low]))
    band = audio.log_mel(high).argmax(0)[audio.FRAMES // 2]
    assert band > audio.log_mel(low).argmax(0).max()
    assert (img.argmax(0)[1:] == band).all()  # 32 frames are 1.06 s: the first one straddles the 300 Hz before
    assert not audio.log_mel(np.zeros(4000)).any()
    assert audio.log_mel(np.zeros(10)).shape == (audio.N_MELS, audio.FRAMES)  # shorter than one window


def test_mel_filterbank_covers_the_band():
    fb = audio.mel_filterbank()
    assert fb.shape == (audio.N_MELS, audio.WINDOW // 2 + 1)
    assert (fb.max(1) > 0.3).all()  # no empty filter
    assert fb.max() <= 1.0


def test_read_wav_formats_and_resampling(tmp_path):
    sig = _tone(440, seconds=0.5, rate=16000)
    _write(tmp_path / "a.wav", sig, rate=16000)
    x = audio.read_wav(tmp_path / "a.wav")
    assert len(x) == 4000 and np.abs(x).max() <= 1.0  # 16 kHz -> 8 kHz
    stereo = np.stack([sig, sig], 1).astype(np.float32)
    wavfile.write(tmp_path / "b.wav", 16000, stereo)
    assert np.allclose(audio.read_wav(tmp_path / "b.wav"), x, atol=1e-3)
    wavfile.write(tmp_path / "c.wav", 8000, ((sig[:4000] + 1) * 127.5).astype(np.uint8))  # 8-bit unsigned
    assert np.abs(audio.read_wav(tmp_path / "c.wav")).max() <= 1.0
    # ... centred on 128: the same samples as 16-bit within 8-bit's step (not offset by +0.5, a DC in the lowest band)
    wavfile.write(tmp_path / "c16.wav", 8000, (sig[:4000] * 32767).astype(np.int16))
    assert np.allclose(audio.read_wav(tmp_path / "c.wav"), audio.read_wav(tmp_path / "c16.wav"), atol=2 / 128)
    # integer stereo is scaled by its sample type like mono (it once came back in raw counts / offset by 128)
    for dtype, to_int in ((np.int16, lambda s: (s * 32767).astype(np.int16)),
                          (np.uint8, lambda s: ((s + 1) * 127.5).astype(np.uint8))):
        mono = to_int(sig[:4000])
        wavfile.write(tmp_path / "m.wav", 8000, mono)
        wavfile.write(tmp_path / "s.wav", 8000, np.stack([mono, mono], 1))
        assert np.array_equal(audio.read_wav(tmp_path / "s.wav"), audio.read_wav(tmp_path / "m.wav")), dtype


def test_read_wav_refuses_corrupt_and_empty_files(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(DataError, match="bad.wav: not a readable wav"):
        audio.read_wav(bad)
    (tmp_path / "text.wav").write_text("not audio at all")
    with pytest.raises(DataError, match="text.wav"):
        audio.read_wav(tmp_path / "text.wav")
    wavfile.write(tmp_path / "empty.wav", 8000, np.zeros(0, np.int16))
    with pytest.raises(DataError, match="empty.wav: the wav file holds no samples"):
        audio.read_wav(tmp_path / "empty.wav")


def test_fsdd_counts_per_speaker_shapes_and_classes(fsdd_root):
    d = audio.load_fsdd(fsdd_root)
    assert d.sample_shape == (1, audio.N_MELS, audio.FRAMES) and len(d) == 3 * 3 * TAKES
    assert d.class_names == tuple(str(i) for i in range(10))  # the digits of MNIST, for cross-modal tasks
    assert audio.fsdd_speakers(fsdd_root) == [(s, 3 * TAKES) for s in SPEAKERS]
    one = audio.load_fsdd(fsdd_root, speaker="bob")
    assert len(one) == 3 * TAKES and np.bincount(one.y).tolist() == [TAKES] * 3
    two = audio.load_fsdd(fsdd_root, speaker="alice,carol")
    assert len(two) == 2 * 3 * TAKES and two.origin != one.origin


def test_fsdd_takes_follow_the_datasets_test_convention(fsdd_root):
    test = audio.load_fsdd(fsdd_root, speaker="alice", takes="test")
    train = audio.load_fsdd(fsdd_root, speaker="alice", takes="train")
    every = audio.load_fsdd(fsdd_root, speaker="alice")
    assert len(test) == 3 * 5 and len(train) == 3 * (TAKES - 5) and len(every) == len(test) + len(train)
    assert test.origin != train.origin  # disjoint recordings: two pools
    # every recording of 'all' is in exactly one of the two
    rows = {r.tobytes() for r in every.X}
    assert rows == {r.tobytes() for r in test.X} | {r.tobytes() for r in train.X}


def test_fsdd_errors_name_the_bad_input(fsdd_root, tmp_path):
    with pytest.raises(UnknownNameError, match=r"unknown speaker\(s\) \['dave'\]; the speakers are alice, bob, carol"):
        audio.load_fsdd(fsdd_root, speaker="dave")
    with pytest.raises(DataError, match="takes must be one of all, train, test"):
        audio.load_fsdd(fsdd_root, takes="dev")
    with pytest.raises(DatasetNotFoundError, match="recordings is absent"):
        audio.load_fsdd(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="QIANYI_DATA is not set"):
        audio.load_fsdd(None)


@pytest.mark.filterwarnings("ignore:the target test split:qianyi.errors.QianyiWarning")
def test_fsdd_spec_makes_a_speaker_task(fsdd_root):
    with pytest.raises(UnknownNameError, match="has no option 'speakers'"):
        qianyi.load_domain("fsdd?speakers=bob", data_dir=fsdd_root)
    task = qianyi.load_task("fsdd?speaker=alice", "fsdd?speaker=bob", data_dir=fsdd_root)
    assert task.is_image and task.source.sample_shape == (1, audio.N_MELS, audio.FRAMES)
    assert len(task.source) + len(task.source_val) == 3 * TAKES  # two speakers: two pools, nothing halved


def test_wav_reader_labels_from_prefix_or_subfolder(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for label in ("2", "10", "1"):
        for k in range(2):
            _write(flat / f"{label}_x_{k}.wav", _tone(200 + 100 * int(label), seed=k))
    d = qianyi.load_domain(f"wav:{flat}")
    assert d.class_names == ("1", "2", "10") and len(d) == 6 and d.sample_shape == (1, 32, 32)
    nested = tmp_path / "nested"
    for label in ("no", "yes"):
        (nested / label).mkdir(parents=True)
        _write(nested / label / "take1.wav", _tone(300 if label == "no" else 900))
    d = qianyi.load_domain(f"wav:{nested}?name=words")
    assert d.name == "words" and d.class_names == ("no", "yes") and d.y.tolist() == [0, 1]


def test_wav_reader_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="no such folder"):
        qianyi.load_domain(f"wav:{tmp_path / 'absent'}")
    with pytest.raises(DataError, match="no .wav files"):
        qianyi.load_domain(f"wav:{tmp_path}")
    _write(tmp_path / "nolabel.wav", _tone(300))
    with pytest.raises(DataError, match="nolabel.wav has no LABEL_ prefix"):
        qianyi.load_domain(f"wav:{tmp_path}")
    (tmp_path / "nolabel.wav").unlink()
    (tmp_path / "3_bad.wav").write_bytes(b"RIFF....WAVE")
    with pytest.raises(DataError, match="3_bad.wav: not a readable wav"):
        qianyi.load_domain(f"wav:{tmp_path}")
    with pytest.raises(UnknownNameError, match="has no option 'size'"):
        qianyi.load_domain(f"wav:{tmp_path}?size=8")


@requires_data("fsdd/recordings")
def test_real_fsdd_speakers_and_takes():
    assert audio.fsdd_speakers(DATA) == [(s, 500) for s in audio.FSDD_SPEAKERS]
    d = qianyi.load_domain("fsdd?speaker=jackson&takes=test", data_dir=DATA)
    assert len(d) == 50 and np.bincount(d.y).tolist() == [5] * 10
    assert d.sample_shape == (1, 32, 32) and 0 <= d.X.min() and d.X.max() <= 1


def test_mfcc_stats_match_a_hand_computed_cepstrum():
    from scipy.fft import dct

    rng = np.random.default_rng(0)
    img = rng.uniform(0, 1, (2, 1, audio.N_MELS, audio.FRAMES))
    img[0, 0, :, :10] = img[0, 0, :, 27:] = 0.0  # silent padding: not active, left out of the statistics
    out = audio.mfcc_stats(img)
    assert out.shape == (2, 4 * audio.N_MFCC) and out.dtype == np.float32
    frames = img[0, 0][:, 10:27]  # the active frames of recording 0
    cep = np.stack([dct(frames[:, j], type=2, norm="ortho")[:audio.N_MFCC] for j in range(frames.shape[1])], 1)
    want = np.concatenate([cep.mean(1), cep.std(1), np.diff(cep, axis=1).mean(1), np.abs(np.diff(cep, axis=1)).mean(1)])
    assert np.allclose(out[0], want, atol=1e-5)
    # a time shift of the speech inside the padding does not change the summary
    shifted = np.roll(img[:1], 4, axis=-1)
    assert np.allclose(audio.mfcc_stats(shifted)[0], out[0], atol=1e-5)


def test_fsdd_views_are_named_vector_columns(fsdd_root):
    from qianyi.data.domain import view_widths

    images = audio.load_fsdd(fsdd_root, speaker="bob")
    d = audio.load_fsdd(fsdd_root, speaker="bob", views="mel,mfcc")
    assert d.X.shape == (len(images), audio.N_MELS * audio.FRAMES + 4 * audio.N_MFCC)
    assert view_widths(d.feature_names) == [("mel", 1024), ("mfcc", 52)]
    assert np.array_equal(d.X[:, :1024], images.X.reshape(len(images), -1))  # mel: the image, flattened
    assert np.allclose(d.X[:, 1024:], audio.mfcc_stats(images.X))
    rev = audio.load_fsdd(fsdd_root, speaker="bob", views="mfcc,mel")
    assert view_widths(rev.feature_names) == [("mfcc", 52), ("mel", 1024)]
    assert d.origin == images.origin  # the same recordings: one pool, whatever the views
    with pytest.raises(UnknownNameError, match=r"fsdd\?views=mel,mfc: unknown view\(s\) \['mfc'\]; the views are mel, mfcc"):
        audio.load_fsdd(fsdd_root, views="mel,mfc")
    with pytest.raises(DataError, match="named twice"):
        audio.load_fsdd(fsdd_root, views="mel,mel")


@pytest.mark.filterwarnings("ignore:the target test split:qianyi.errors.QianyiWarning")
def test_cotraining_runs_on_fsdd_views(fsdd_root):
    from qianyi.data.domain import view_widths
    from qianyi.train import TrainConfig, run

    task = qianyi.load_task("fsdd?speaker=alice&views=mel,mfcc", "fsdd?speaker=bob&views=mel,mfcc", data_dir=fsdd_root)
    assert not task.is_image and task.source.name.endswith("&views=mel,mfcc")
    split = view_widths(task.source.feature_names)[0][1]
    res, _ = run("cotrain", task, TrainConfig(epochs=2, steps_per_epoch=3, batch_size=8, progress=False), split=split)
    assert 0.0 <= res.target_accuracy <= 1.0 and "agree" in res.history[-1]


def test_upper_case_wav_files_count_and_long_recordings_stay_within_the_limits(tmp_path, monkeypatch):
    # .WAV was skipped silently (two of three files, and their classes, gone)
    for i, name in enumerate(("3_a.WAV", "4_a.Wav", "5_a.wav")):
        _write(tmp_path / name, _tone(300 + 100 * i))
    d = qianyi.data.load_domain(f"wav:{tmp_path}")
    assert d.class_names == ("3", "4", "5") and len(d) == 3
    # a long clip is framed a chunk at a time: the same image as framing it whole
    x = np.random.default_rng(0).normal(0, 0.1, audio.HOP * (2 * audio.MEL_CHUNK + 37))
    monkeypatch.setattr(audio, "MEL_CHUNK", 10 ** 9)
    whole = audio.log_mel(x)
    monkeypatch.undo()
    assert np.array_equal(audio.log_mel(x), whole)
    # and a file over QIANYI_MAX_BYTES is refused before it is read (it was transformed whole)
    monkeypatch.setenv("QIANYI_MAX_BYTES", "1000")
    with pytest.raises(DataError, match="QIANYI_MAX_BYTES"):
        audio.read_wav(tmp_path / "5_a.wav")


# --- review (datasets): cut wav files, incomplete FSDD copies ------------------------------------------------

def test_a_truncated_wav_is_refused_and_an_unknown_chunk_is_not(tmp_path):
    import struct
    import warnings

    _write(tmp_path / "whole.wav", _tone(440))
    whole = (tmp_path / "whole.wav").read_bytes()
    for size in (100, 2000):  # the header declares 4,844 bytes: a cut file would read as a 3.5 ms or 0.24 s clip
        (tmp_path / "cut.wav").write_bytes(whole[:size])
        with pytest.raises(DataError, match=rf"cut.wav: the wav file is truncated \(Reached EOF prematurely.*it has "
                                            rf"{size:,} bytes\): restore or re-export it"):
            audio.read_wav(tmp_path / "cut.wav")
    chunk = b"abcd" + struct.pack("<I", 4) + b"meta"  # an extra chunk scipy does not know, after the samples
    riff = struct.pack("<I", len(whole) + len(chunk) - 8)
    (tmp_path / "extra.wav").write_bytes(whole[:4] + riff + whole[8:] + chunk)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(audio.read_wav(tmp_path / "extra.wav"), audio.read_wav(tmp_path / "whole.wav"))
    # a writer that could not seek back (ffmpeg to a pipe) leaves both sizes at 0xFFFFFFFF: a whole file
    at = whole.index(b"data") + 4
    streamed = whole[:4] + b"\xff" * 4 + whole[8:at] + b"\xff" * 4 + whole[at + 4:]
    (tmp_path / "streamed.wav").write_bytes(streamed)
    assert np.array_equal(audio.read_wav(tmp_path / "streamed.wav"), audio.read_wav(tmp_path / "whole.wav"))


def test_a_wav_whose_sizes_are_the_placeholder_0_is_read_to_its_end(tmp_path):
    """Review mutation2 #14: a data size of 0 (and a RIFF size of 0) was read as no samples or not at all."""
    _write(tmp_path / "whole.wav", _tone(440))
    whole = (tmp_path / "whole.wav").read_bytes()
    want = audio.read_wav(tmp_path / "whole.wav")
    at = whole.index(b"data") + 4
    real = whole[4:8]  # a writer may fill in the RIFF size and leave the data size
    for riff, data in ((b"\x00" * 4, b"\x00"), (b"\xff" * 4, b"\x00"), (real, b"\x00"), (b"\x00" * 4, b"\xff"),
                       (b"\xff" * 4, b"\xff")):
        streamed = whole[:4] + riff + whole[8:at] + data * 4 + whole[at + 4:]
        (tmp_path / "s.wav").write_bytes(streamed)
        assert np.array_equal(audio.read_wav(tmp_path / "s.wav"), want), (riff, data)
        (tmp_path / "s.wav").write_bytes(streamed + b"\x01")  # a stream cut inside its last sample: that sample dropped
        assert np.array_equal(audio.read_wav(tmp_path / "s.wav"), want), (riff, data)
        (tmp_path / "s.wav").write_bytes(streamed[:at + 4])  # the header alone: still no samples
        with pytest.raises(DataError, match="s.wav: the wav file holds no samples"):
            audio.read_wav(tmp_path / "s.wav")


def _fsdd_links(tmp_path, leave_out: str = "", add: str = ""):
    """A data folder whose fsdd/recordings links to the real files, less those whose name starts with ``leave_out``."""
    rec = tmp_path / "fsdd" / "recordings"
    rec.mkdir(parents=True)
    for p in (DATA / "fsdd" / "recordings").glob("*.wav"):
        if not (leave_out and p.name.startswith(leave_out)):
            (rec / p.name).symlink_to(p)
    if add:
        (rec / add).symlink_to(DATA / "fsdd" / "recordings" / "1_theo_0.wav")
    return tmp_path


@requires_data("fsdd/recordings")
def test_an_incomplete_copy_of_fsdd_is_refused(tmp_path):
    root = _fsdd_links(tmp_path / "a", leave_out="1_theo_")
    for spec in ("fsdd?speaker=theo", "fsdd", "fsdd?speaker=theo&takes=train"):
        with pytest.raises(DataError, match=r"fsdd/recordings lacks 50 of the 500 recordings of theo \(e.g. 1_theo_0.wav, "
                                            r"1_theo_1.wav, 1_theo_2.wav\); restore .* from its SOURCE.md"):
            qianyi.load_domain(spec, data_dir=root)
    assert len(qianyi.load_domain("fsdd?speaker=george&takes=test", data_dir=root)) == 50  # other speakers: whole
    root = _fsdd_links(tmp_path / "b", add="1_theo_50.wav")
    with pytest.raises(DataError, match=r"holds 1 recording\(s\) of theo that FSDD has not \(e.g. 1_theo_50.wav; "
                                        r"takes are 0-49\)"):
        qianyi.load_domain("fsdd?speaker=theo", data_dir=root)
    root = _fsdd_links(tmp_path / "c")
    for p in (root / "fsdd" / "recordings").glob("*_lucas_*.wav"):
        p.unlink()
    with pytest.raises(DataError, match=r"fsdd/recordings holds no recordings of lucas; restore"):
        qianyi.load_domain("fsdd", data_dir=root)
