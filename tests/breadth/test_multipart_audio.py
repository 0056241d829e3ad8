"""The form-data codec the gateway, the adapter and the simulator share, and audio durations."""

from __future__ import annotations

import struct

import httpx
import pytest
from tests.breadth.conftest import wav

from aiwire import errors
from aiwire.providers import multipart
from aiwire.providers.audio import duration_seconds


def test_round_trip_keeps_binary_bytes_and_order() -> None:
    audio = bytes(range(256)) * 40 + b"\r\n--not-the-boundary\r\n"
    body, ctype = multipart.encode(
        [("model", "whisper-1"), ("timestamp_granularities[]", "word")],
        [("file", 'a "quoted".wav', "audio/wav", audio)],
    )
    parts = multipart.parse(body, ctype)
    assert [p.name for p in parts] == ["model", "timestamp_granularities[]", "file"]
    assert parts[0].text == "whisper-1"
    assert parts[2].data == audio
    assert parts[2].filename == 'a "quoted".wav'
    assert parts[2].content_type == "audio/wav"


def test_parses_what_httpx_sends() -> None:
    """The official SDK builds its upload with httpx: parse exactly those bytes."""
    request = httpx.Request(
        "POST",
        "http://x/v1/audio/transcriptions",
        data={"model": "whisper-1", "language": "nb"},
        files={"file": ("møte.wav", b"RIFF....", "audio/wav")},
    )
    body = request.read()
    parts = multipart.parse(body, request.headers["content-type"])
    by_name = {p.name: p for p in parts}
    assert by_name["model"].text == "whisper-1" and by_name["language"].text == "nb"
    assert by_name["file"].data == b"RIFF...." and by_name["file"].filename == "møte.wav"


@pytest.mark.parametrize(
    ("body", "ctype", "fragment"),
    [
        (b"x", None, "multipart/form-data"),
        (b"x", "application/json", "expected Content-Type"),
        (
            b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n",
            "multipart/form-data; boundary=b",
            "closing",
        ),
        (
            b"--b\r\nX: y\r\n\r\n1\r\n--b--\r\n",
            "multipart/form-data; boundary=b",
            "Content-Disposition",
        ),
        (b"no boundary here", 'multipart/form-data; boundary="b"', "no part"),
    ],
)
def test_malformed_forms_are_refused_by_name(body: bytes, ctype: str | None, fragment: str) -> None:
    with pytest.raises(errors.BadRequestError, match=fragment):
        multipart.parse(body, ctype)


def test_too_many_parts_are_refused() -> None:
    body, ctype = multipart.encode([(f"f{i}", "v") for i in range(multipart.MAX_PARTS + 1)], [])
    with pytest.raises(errors.BadRequestError, match="more than"):
        multipart.parse(body, ctype)


def test_wav_duration_from_its_header() -> None:
    assert duration_seconds(wav(2.5)) == pytest.approx(2.5)
    assert duration_seconds(wav(0.75, rate=16000)) == pytest.approx(0.75)


def test_flac_duration_from_streaminfo() -> None:
    rate, total = 44100, 44100 * 3
    packed = (rate << 44) | (1 << 41) | (15 << 36) | total  # rate, 2 channels, 16 bits, samples
    streaminfo = b"\x00" * 10 + packed.to_bytes(8, "big") + b"\x00" * 16
    flac = b"fLaC" + bytes([0x80]) + struct.pack(">I", 34)[1:] + streaminfo
    assert duration_seconds(flac) == pytest.approx(3.0)


def test_unknown_formats_have_no_duration() -> None:
    assert duration_seconds(b"ID3\x04mp3 frames...") is None
    assert duration_seconds(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None
