"""Sans-IO codec for FreeSWITCH's ``unicast`` media stream (core ``switch_ivr.c``).

On FreeSWITCH the daemon hears an answered callback leg the way core FreeSWITCH offers:
the leg parks, and a ``sendmsg <uuid>`` with ``call-command: unicast`` makes the park loop
send every frame it reads from the callee to the daemon. No sockets, no clocks, no logging
here: the ``sendmsg`` headers out, datagrams in, 8 kHz samples out.

What FreeSWITCH 1.10 does (``switch_ivr_parse_event``, ``switch_ivr_activate_unicast``,
``switch_ivr_park``), and this module relies on:

- Headers ``local-ip``/``local-port`` (the switch's end, bound before anything is sent;
  port 0 lets the system choose), ``remote-ip``/``remote-port`` (where it sends),
  ``transport`` (``udp`` or ``tcp``: either way the socket is a UDP one, IPv4 only) and
  ``flags`` (``native`` would send the codec's own bytes: never asked for here).
- Only while the leg is parked, each frame the switch reads (one packet time, 20 ms for
  the usual PCMU/PCMA) is decoded to L16 at the leg's read rate (``Channel-Read-Codec-Rate``
  of its events: 8000 in every transcript, 16000 for G.722, 48000 for Opus) and sent as
  one datagram of host-order (little-endian on x86-64 and ARM64) 16-bit samples. A
  comfort-noise frame is sent as bytes ``0xff`` (samples of -1: silence).
- The switch reports no failure to the client: ``sendmsg`` answers ``+OK`` even when the
  bind fails, so a stream that never starts is the only sign.

Invariants of the decoder: a datagram that is empty, of an odd length, or longer than
``max_datagram_bytes`` is refused (``UnicastProtocolError``, naming what was wrong) and
changes nothing, so the next good one decodes as if it had not come (the switch decodes
into a buffer of ``SWITCH_RECOMMENDED_BUFFER_SIZE``, 8192 bytes: no real frame is longer).
Rates above 8 kHz that are whole multiples of it are low-pass filtered and decimated with
state carried across datagrams, so a stream cut into any datagram sizes decodes to the
same samples.
"""

from __future__ import annotations

import ipaddress

import numpy as np

from pbx_agent.amd.audio import SAMPLE_RATE, Pcm
from pbx_agent.errors import ProtocolError
from pbx_agent.wire.digits import parse_decimal

__all__ = [
    "SUPPORTED_RATES",
    "UnicastAudioDecoder",
    "UnicastProtocolError",
    "parse_read_rate",
    "unicast_headers",
]

SUPPORTED_RATES = (8000, 16000, 24000, 32000, 48000)
# The anti-aliasing filter: a windowed sinc cutting at 3.6 kHz, this many taps per
# decimation step on each side (16 kHz: 33 taps).
_TAPS_PER_STEP = 16
_CUTOFF_HZ = 3600.0


class UnicastProtocolError(ProtocolError):
    """A datagram that is not a stream of 16-bit samples, or a rate we cannot take."""


def parse_read_rate(value: str | None) -> int:
    """A leg's ``Channel-Read-Codec-Rate`` as a rate the decoder takes (8000 when absent)."""
    if value is None or not value.strip():
        return SAMPLE_RATE
    text = value.strip()
    rate = parse_decimal(text)
    if rate not in SUPPORTED_RATES:
        accepted = ", ".join(str(r) for r in SUPPORTED_RATES)
        msg = f"read rate {text[:20]!r} refused; accepted: {accepted} Hz"
        raise UnicastProtocolError(msg)
    return rate


def _ipv4(name: str, value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        msg = (
            f"unicast {name} {value[:60]!r} refused; accepted: an IPv4 address "
            "(FreeSWITCH's unicast socket is IPv4 only)"
        )
        raise ValueError(msg) from None


def _port(name: str, value: int, *, lowest: int) -> str:
    if not lowest <= value <= 65535:
        msg = f"unicast {name} {value} refused; accepted: {lowest}..65535"
        raise ValueError(msg)
    return str(value)


def unicast_headers(
    *, local_ip: str, local_port: int, remote_ip: str, remote_port: int
) -> list[tuple[str, str]]:
    """The ``sendmsg`` headers that start the stream: the switch binds ``local_ip:local_port``
    (0: any free port) and sends L16 datagrams to ``remote_ip:remote_port``. Only IPv4
    literals and port numbers go on the wire, so no header can carry anything else."""
    return [
        ("call-command", "unicast"),
        ("local-ip", _ipv4("local-ip", local_ip)),
        ("local-port", _port("local-port", local_port, lowest=0)),
        ("remote-ip", _ipv4("remote-ip", remote_ip)),
        ("remote-port", _port("remote-port", remote_port, lowest=1)),
        ("transport", "udp"),
    ]


def _lowpass(step: int) -> np.ndarray:
    """Windowed-sinc taps for decimating by ``step`` (unit gain at DC)."""
    half = _TAPS_PER_STEP * step
    n = np.arange(-half, half + 1, dtype=np.float64)
    cutoff = _CUTOFF_HZ / (SAMPLE_RATE * step)  # cycles per input sample
    taps = 2 * cutoff * np.sinc(2 * cutoff * n) * np.hamming(n.size)
    normalised: np.ndarray = taps / taps.sum()
    return normalised


class UnicastAudioDecoder:
    """Datagrams of one leg's stream → 8 kHz 16-bit samples."""

    def __init__(self, rate: int = SAMPLE_RATE, *, max_datagram_bytes: int = 8192) -> None:
        if rate not in SUPPORTED_RATES:
            accepted = ", ".join(str(r) for r in SUPPORTED_RATES)
            msg = f"rate {rate} refused; accepted: {accepted} Hz"
            raise UnicastProtocolError(msg)
        self.rate = rate
        self.max_datagram_bytes = max_datagram_bytes
        self._step = rate // SAMPLE_RATE
        self._taps = _lowpass(self._step) if self._step > 1 else None
        # The last input samples the filter still needs, and where the next kept one is.
        self._history = np.zeros(0 if self._taps is None else self._taps.size - 1)
        self._skip = 0
        self.samples_in = 0

    def decode(self, datagram: bytes) -> Pcm:
        """One datagram's samples at 8 kHz (fewer than its own at a higher rate)."""
        size = len(datagram)
        if size == 0:
            msg = "unicast datagram refused: empty (a frame carries at least one sample)"
            raise UnicastProtocolError(msg)
        if size > self.max_datagram_bytes:
            msg = (
                f"unicast datagram of {size} bytes refused; accepted: at most "
                f"{self.max_datagram_bytes} (one frame of 16-bit samples)"
            )
            raise UnicastProtocolError(msg)
        if size % 2:
            msg = f"unicast datagram of {size} bytes refused: not whole 16-bit samples"
            raise UnicastProtocolError(msg)
        samples = np.frombuffer(datagram, dtype="<i2")
        self.samples_in += samples.size
        if self._taps is None:
            return samples.astype(np.int16)
        signal = np.concatenate([self._history, samples.astype(np.float64)])
        filtered = np.convolve(signal, self._taps, mode="valid")
        self._history = signal[-(self._taps.size - 1) :]
        kept = filtered[self._skip :: self._step]
        self._skip = (self._skip - filtered.size) % self._step
        out: Pcm = np.clip(np.round(kept), -32768, 32767).astype(np.int16)
        return out
