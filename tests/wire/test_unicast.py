"""FreeSWITCH's unicast stream: the sendmsg headers and the datagram decoder."""

from __future__ import annotations

import numpy as np
import pytest

from pbx_agent.amd import signals as s
from pbx_agent.amd.audio import to_pcm
from pbx_agent.wire.unicast import (
    UnicastAudioDecoder,
    UnicastProtocolError,
    parse_read_rate,
    unicast_headers,
)


def test_the_headers_ask_for_a_udp_stream_of_l16_to_the_daemon() -> None:
    """No ``flags``: without ``native`` the switch decodes to L16 (switch_ivr.c)."""
    assert unicast_headers(
        local_ip="10.0.0.5", local_port=0, remote_ip="10.0.0.9", remote_port=9100
    ) == [
        ("call-command", "unicast"),
        ("local-ip", "10.0.0.5"),
        ("local-port", "0"),
        ("remote-ip", "10.0.0.9"),
        ("remote-port", "9100"),
        ("transport", "udp"),
    ]


@pytest.mark.parametrize(
    "address",
    ["::1", "pbx.example", "127.0.0.1\r\ncall-command: hangup", "", "300.1.1.1"],
)
def test_only_an_ipv4_literal_reaches_a_header(address: str) -> None:
    with pytest.raises(ValueError, match="accepted: an IPv4 address") as error:
        unicast_headers(local_ip="127.0.0.1", local_port=0, remote_ip=address, remote_port=9100)
    assert "\n" not in str(error.value).replace("\\n", "")


@pytest.mark.parametrize(("local", "remote"), [(-1, 9100), (70000, 9100), (0, 0), (0, 65536)])
def test_ports_out_of_range_are_refused(local: int, remote: int) -> None:
    with pytest.raises(ValueError, match=r"refused; accepted: [01]\.\.65535"):
        unicast_headers(
            local_ip="127.0.0.1", local_port=local, remote_ip="127.0.0.1", remote_port=remote
        )


@pytest.mark.parametrize(
    ("value", "rate"),
    [(None, 8000), ("", 8000), ("8000", 8000), (" 16000 ", 16000), ("48000", 48000)],
)
def test_the_read_rate_comes_from_the_event(value: str | None, rate: int) -> None:
    assert parse_read_rate(value) == rate


@pytest.mark.parametrize("value", ["44100", "11025", "abc", "-8000", "8000.0"])
def test_a_rate_the_decoder_cannot_take_is_refused_by_name(value: str) -> None:
    with pytest.raises(UnicastProtocolError, match=r"accepted: 8000, 16000, 24000, 32000, 48000"):
        parse_read_rate(value)
    with pytest.raises(UnicastProtocolError, match="refused"):
        UnicastAudioDecoder(11025)


def test_8khz_datagrams_are_the_samples_as_they_came() -> None:
    pcm = to_pcm(s.tone(440.0, 0.04))
    decoder = UnicastAudioDecoder()
    out = decoder.decode(pcm.astype("<i2").tobytes())
    assert np.array_equal(out, pcm)
    assert decoder.samples_in == pcm.size


@pytest.mark.parametrize(
    ("datagram", "problem"),
    [(b"", "empty"), (b"\x01\x02\x03", "not whole 16-bit samples"), (b"\0" * 8194, "at most 8192")],
)
def test_a_malformed_datagram_is_refused_and_changes_nothing(datagram: bytes, problem: str) -> None:
    decoder = UnicastAudioDecoder(16000)
    good = (np.arange(320, dtype=np.int16) * 50).astype("<i2").tobytes()
    reference = UnicastAudioDecoder(16000)
    expected = np.concatenate([reference.decode(good), reference.decode(good)])
    out = [decoder.decode(good)]
    with pytest.raises(UnicastProtocolError, match=problem):
        decoder.decode(datagram)
    out.append(decoder.decode(good))
    assert np.array_equal(np.concatenate(out), expected)
    assert decoder.samples_in == 640


def _tone_at(rate: int, freq: float, seconds: float, level: float = 0.3) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return np.round(level * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def _rms_db(pcm: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)) / 32768 + 1e-12))


@pytest.mark.parametrize("rate", [16000, 24000, 32000, 48000])
def test_higher_rates_are_brought_to_8khz_keeping_the_voice_band(rate: int) -> None:
    tone = _tone_at(rate, 700.0, 0.5)
    data = tone.astype("<i2").tobytes()
    out = UnicastAudioDecoder(rate, max_datagram_bytes=len(data)).decode(data)
    assert out.size == tone.size * 8000 // rate
    steady = out[400:]
    assert abs(_rms_db(steady) - _rms_db(tone)) < 0.5
    spectrum = np.abs(np.fft.rfft(steady * np.hanning(steady.size)))
    assert abs(np.argmax(spectrum) * 8000 / steady.size - 700.0) < 10.0


@pytest.mark.parametrize("rate", [16000, 48000])
def test_what_lies_above_the_band_does_not_fold_into_it(rate: int) -> None:
    """A 6 kHz whistle at 16/48 kHz would alias to 2 kHz at 8 kHz without the filter."""
    whistle = _tone_at(rate, 6000.0, 0.5)
    data = whistle.astype("<i2").tobytes()
    out = UnicastAudioDecoder(rate, max_datagram_bytes=len(data)).decode(data)
    assert _rms_db(out[400:]) < _rms_db(whistle) - 40.0


@pytest.mark.parametrize("sizes", [[640], [320, 960], [2, 638, 1000, 4]])
def test_the_same_stream_decodes_the_same_however_it_is_cut(sizes: list[int]) -> None:
    rate = 48000
    stream = (np.random.default_rng(7).normal(0, 3000, rate // 2)).astype("<i2").tobytes()
    whole = UnicastAudioDecoder(rate, max_datagram_bytes=len(stream)).decode(stream)
    decoder = UnicastAudioDecoder(rate, max_datagram_bytes=len(stream))
    parts = []
    offset = 0
    index = 0
    while offset < len(stream):
        size = sizes[index % len(sizes)]
        parts.append(decoder.decode(stream[offset : offset + size]))
        offset += size
        index += 1
    assert np.array_equal(np.concatenate(parts), whole)
