"""Decoding, downmixing and resampling real files; clear errors for bad ones."""

import numpy as np
import pytest
import soundfile

from yapbench.audio import AudioError, load_clip
from yapbench.protocol import FRAME_SAMPLES, SAMPLE_RATE
from yapbench.samples import DEFAULT_MANIFEST, load_manifest

SAMPLES = DEFAULT_MANIFEST.parent


@pytest.mark.parametrize("name", ["mid.wav", "short-noisy.wav", "long.mp3", "real/en_jfk_inaugural_1961.flac",
                                  "synthetic/fr_espeak_long_48k_stereo.mp3"])
def test_every_format_becomes_24khz_mono_float32(name):
    clip = load_clip(SAMPLES / name)
    manifest = {s.name: s for s in load_manifest()}
    assert clip.pcm.dtype == np.float32 and clip.pcm.ndim == 1
    assert abs(clip.duration_s - manifest[name].duration_s) < 0.01
    frames = clip.frames()
    assert frames.shape == (clip.n_frames, FRAME_SAMPLES)
    assert np.array_equal(frames.reshape(-1)[: clip.pcm.size], clip.pcm)
    assert not frames.reshape(-1)[clip.pcm.size:].any()  # zero padding


def test_resampling_is_band_limited_not_linear(tmp_path):
    rate = 16000
    t = np.arange(rate) / rate
    tone = 0.5 * np.sin(2 * np.pi * 7000 * t)  # near Nyquist: linear interpolation would smear it
    stereo = np.stack([tone, tone], axis=1)
    path = tmp_path / "tone.wav"
    soundfile.write(path, stereo, rate, subtype="PCM_24")
    pcm = load_clip(path).pcm
    spectrum = np.abs(np.fft.rfft(pcm[2400:-2400] * np.hanning(pcm.size - 4800)))
    freqs = np.fft.rfftfreq(pcm.size - 4800, 1 / SAMPLE_RATE)
    peak = freqs[spectrum.argmax()]
    assert abs(peak - 7000) < 5
    # images (9000 Hz, 17000 Hz) that a naive resampler leaves are at least 60 dB down
    image = spectrum[(freqs > 8500) & (freqs < 12000)].max()
    assert 20 * np.log10(image / spectrum.max()) < -60


@pytest.mark.parametrize("content,reason", [(b"", "is empty (0 bytes)"),
                                            (b"RIFF\x00\x00\x00\x00WAVEjunk" + b"\x01" * 100, "not a readable"),
                                            (b"hello, I am a text file\n" * 20, "not a readable")])
def test_bad_files_name_the_file_and_the_reason(tmp_path, content, reason):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError) as err:
        load_clip(path)
    assert str(path) in str(err.value) and reason in str(err.value)


def test_missing_file_directory_and_empty_audio(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        load_clip(tmp_path / "nope.wav")
    with pytest.raises(AudioError, match="directory"):
        load_clip(tmp_path)
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0), 16000)
    with pytest.raises(AudioError, match="no audio samples"):
        load_clip(empty)


def test_8bit_and_too_long_audio(tmp_path):
    path = tmp_path / "u8.wav"
    soundfile.write(path, (np.sin(np.arange(8000) / 5) * 0.5), 8000, subtype="PCM_U8")
    clip = load_clip(path)
    assert clip.source_rate == 8000 and abs(clip.duration_s - 1.0) < 1e-3 and np.abs(clip.pcm).max() > 0.3
    with pytest.raises(AudioError, match="limit"):
        load_clip(path, max_seconds=0.5)
