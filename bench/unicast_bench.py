"""How many FreeSWITCH callback legs being judged at once one daemon's unicast receiver keeps
up with: verdicts, their lag behind the audio, CPU and lost datagrams, for N legs at once.

    .venv/bin/python bench/unicast_bench.py [--quick] [--legs 10,50,400] [--json OUT]

On FreeSWITCH each answered callback parks, and the switch streams what the callee says to
the daemon, one UDP port of ``freeswitch.unicast_ports`` per leg, until the answering-machine
verdict (``pbx_agent/pbx/unicast_server.py``). Here N legs are answered at the same moment:
one ``UnicastAudioServer`` with the daemon's default detector settings (``standards.amd``:
6 s deadline, HUMAN by default) opens N sockets on 127.0.0.1, and a separate sender process
plays FreeSWITCH's park loop: one 320-byte datagram (20 ms of 8 kHz 16-bit little-endian
audio) per leg every 20 ms, paced in real time, from one socket per leg, the first 50 ms
after the answers (the unicast command's round trip and the first frame read). The legs
are spread over the 20 ms in 10 phases 2 ms apart, as answers at different moments would
be. Even legs are a person answering ("Алло?", ``CalleeVoice.HUMAN``), odd legs a recorded
greeting and its beep (``CalleeVoice.MACHINE``), seed = the leg's number; after its clip a
leg sends silence frames until its verdict is in (the daemon then takes the leg out of the
park, which ends the stream) or for 8 s at most. The receiver runs on one core and the
sender on the other (when there are two), so the sender neither shares the receiver's event
loop nor its CPU figure. N: 10, 25, 50, 100, 200, 300, 400 (``--quick``: 10 and 50;
``--legs`` chooses; more than 200 needs a larger ``max_sessions`` than the daemon's).

The figures, per N:

- verdicts: received / N (every leg gets one: the server's invariant); correct: the
  detector's own verdict, HUMAN for a person and MACHINE for a greeting; default: the
  deadline or no-audio verdict (``on_deadline``, HUMAN), given when the detector was not
  done in time: the call goes on as if a person had answered; other: a wrong or NOTSURE one.
- lag (p50 / max over the detector's verdicts): the verdict's wall time less the moment
  the datagram that decided left the sender (a leg's last datagram counted; its moment is
  the sender's schedule, on ``time.monotonic``, the receiver's event loop's clock too). A
  receiver that keeps up shows a few ms, the frame's own processing; more means it was that
  far behind the audio when it judged the frame that decided, and each customer waits that
  much longer in silence. Once lag plus the audio a verdict needs (1.66 s for this person,
  3.5 s for this greeting) passes the 6 s deadline, the default replaces the detector's
  verdict. A datagram dropped before the verdict counts as 20 ms more lag. The JSON also
  has the lag by the daemon's own clocks, ``lag_by_decided_at``: the verdict's wall time,
  less the answer, less the verdict's ``decided_at_ms``. That clock starts when the
  receiver reads a leg's first datagram, so it leaves out a backlog already there then (it
  reads below zero when the receiver was behind at the start and caught up), and it is on
  the detector's 20 ms grid (up to 20 ms more).
- receiver CPU: its process's CPU time (``time.process_time``) per second of wall time,
  from the first datagram sent to the last verdict; 1.0 is a whole core, all one Python
  process can use. All N legs stream for the first 1.7 s, then only the greetings, so this
  is an average and the load peaks while the persons are judged (where the lag is worst).
  "CPU ms/leg" is that CPU time over N; "legs/core" is the audio that reached the detector
  (datagrams x 20 ms) over that CPU time: how many legs streaming at once a whole core
  would carry at this cost, the receiver's capacity when the CPU is near 1.0. The log lines
  the server writes are rendered as in production (JSON, to /dev/null) and are part of it;
  the JSON splits user and kernel time.
- datagrams: sent (by the sender; "send errors" it could not send); detector: those that
  reached the detector, the ``datagrams`` of each leg's ``unicast_stream_closed`` log line
  (seen through ``configure_logging``'s tap, which keeps the production rendering; structlog's
  ``capture_logs`` would replace it and leave its CPU out); dropped: the kernel's Udp
  ``InErrors`` over the round (``/proc/net/snmp``; it includes ``RcvbufErrors``: a leg's
  socket buffer was full because the receiver was behind). The rest came after the leg's
  verdict and were never needed (the JSON splits it: read and ignored, left in the socket's
  buffer when it closed, sent to the closed port before the sender saw the verdict). The
  kernel counters are the whole machine's: other UDP traffic meanwhile would count too. A
  socket's default buffer (``net.core.rmem_default``, 208 KiB here) holds about 3 s of one
  leg's audio, so lag and default verdicts show long before a datagram is dropped.
- sender late: the most the sender's schedule slipped (ms): a check that the load was sent
  in real time.

For the administrator: ``freeswitch.unicast_ports`` needs one port per leg being judged at
the same moment (the default 9100-9299 is 200; the server also takes at most 200 streams,
its ``max_sessions``); a leg holds its port from the answer to its verdict, a few seconds.
A leg that finds no port free gets the default verdict at once (``unicast_not_started``).
The figures say how many of those one daemon judges in time on this machine, without the
rest of its work (AMI/ESL events, policies, the ESL commands around each leg, a real
network and its interrupts), which shares the same core: read them as an upper bound.
Figures are printed; nothing passes or fails here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import socket
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from common import machine, null_stream, pin_to_one_core, quantiles_ms, write_json

from pbx_agent.amd.detector import Verdict
from pbx_agent.amd.params import DetectorParams, VerdictKind, detector_params
from pbx_agent.config import Config
from pbx_agent.logging import configure_logging
from pbx_agent.pbx.unicast_server import UnicastAudioServer
from pbx_agent.testing.audiosocket_client import CalleeVoice, callee_audio

HOST = "127.0.0.1"
FRAME_BYTES = 320  # 20 ms of 8 kHz 16-bit samples: what the park loop sends for PCMU/PCMA
FRAME_S = 0.020
PHASES = 10  # the legs' frames are spread over the 20 ms, 2 ms apart
SILENCE = b"\0" * FRAME_BYTES
CAP_S = 8.0  # no leg streams longer than this (the deadline is 6 s)
# The first frame leaves this long after the answers: the switch's round trip for the
# unicast command and the one 20 ms frame it reads before it sends.
START_DELAY_S = 0.05
FIRST_AUDIO_TIMEOUT_S = 5.0  # generous: the sender starts within milliseconds of the answers
READY_TIMEOUT_S = 60.0  # the sender's start: an interpreter, numpy, N clips
REPORT_TIMEOUT_S = CAP_S + 10.0
JOIN_TIMEOUT_S = 5.0
DEFAULT_REASONS = ("deadline", "no-audio", "closed")
FULL = (10, 25, 50, 100, 200, 300, 400)
QUICK = (10, 50)


def voice_of(leg: int) -> CalleeVoice:
    return CalleeVoice.HUMAN if leg % 2 == 0 else CalleeVoice.MACHINE


def expected_kind(leg: int) -> VerdictKind:
    return VerdictKind.HUMAN if voice_of(leg) is CalleeVoice.HUMAN else VerdictKind.MACHINE


# ------------------------------------------------------------------------------ the sender


def frames_of(audio: bytes) -> list[bytes]:
    return [
        audio[at : at + FRAME_BYTES].ljust(FRAME_BYTES, b"\0")
        for at in range(0, len(audio), FRAME_BYTES)
    ]


def sender_main(
    conn: Connection, done: Any, stop: Any, legs: int, cap_s: float, cpus: list[int]
) -> None:
    """The switch's side, in its own process: N legs' frames in real time until each leg's
    verdict is in (``done[i]``), ``stop`` is set, or ``cap_s`` has passed."""
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, set(cpus))
    clips = [frames_of(callee_audio(voice_of(i), seed=i)) for i in range(legs)]
    socks: list[socket.socket] = []
    try:
        for _ in range(legs):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socks.append(sock)
            sock.bind((HOST, 0))
        conn.send(("ready", None))
        if not conn.poll(READY_TIMEOUT_S):
            return
        kind, ports = conn.recv()
        if kind == "go":
            conn.send(("report", stream(socks, ports, clips, done, stop, cap_s)))
    except (EOFError, BrokenPipeError):
        return  # the receiver's side is gone: nothing to report to
    finally:
        for sock in socks:
            sock.close()
        conn.close()


def sent_at(t0: float, leg: int, frame: int) -> float:
    """When the sender's schedule sends ``leg``'s ``frame`` (``time.monotonic``, which is
    the clock of the receiver's event loop too)."""
    return t0 + frame * FRAME_S + (leg % PHASES) * FRAME_S / PHASES


def stream(
    socks: list[socket.socket],
    ports: list[int],
    clips: list[list[bytes]],
    done: Any,
    stop: Any,
    cap_s: float,
) -> dict[str, Any]:
    legs = len(socks)
    sent = [0] * legs
    errors = 0
    late_max = 0.0
    cpu0 = time.process_time()
    t0 = time.monotonic() + START_DELAY_S
    for k in range(round(cap_s / FRAME_S)):
        if stop.value or sum(done) == legs:
            break
        for phase in range(PHASES):
            due = sent_at(t0, phase, k)
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            late_max = max(late_max, time.monotonic() - due)
            for i in range(phase, legs, PHASES):
                if done[i]:
                    continue
                clip = clips[i]
                try:
                    socks[i].sendto(clip[k] if k < len(clip) else SILENCE, (HOST, ports[i]))
                except OSError:
                    errors += 1
                else:
                    sent[i] += 1
    wall = time.monotonic() - t0
    return {
        "sent": sent,
        "t0": t0,
        "send_errors": errors,
        "late_max_ms": round(late_max * 1000, 2),
        "cpu_per_s": round((time.process_time() - cpu0) / wall, 3) if wall > 0 else 0.0,
        "wall_s": round(wall, 2),
    }


# ---------------------------------------------------------------------------- the receiver


@dataclass
class LogTap:
    """The server's log events as the daemon renders them: ``unicast_stream_closed`` per leg
    (its counts), and how many of each warning."""

    closed: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)

    def __call__(self, event: Mapping[str, Any]) -> None:
        name = str(event.get("event"))
        if name == "unicast_stream_closed":
            self.closed[str(event["leg"])] = event
        elif event.get("level") in ("warning", "error", "critical"):
            self.warnings[name] = self.warnings.get(name, 0) + 1

    def reset(self) -> None:
        self.closed.clear()
        self.warnings.clear()


@dataclass(frozen=True, slots=True)
class Window:
    """The receiver's CPU (all, user, kernel) over the wall time of the streaming."""

    cpu_s: float
    user_s: float
    system_s: float
    wall_s: float

    def per_s(self, seconds: float) -> float:
        return round(seconds / self.wall_s, 3) if self.wall_s > 0 else 0.0


def udp_counters() -> dict[str, int]:
    """The kernel's UDP counters (``/proc/net/snmp``), for the whole machine."""
    lines = [ln.split() for ln in Path("/proc/net/snmp").read_text().splitlines()]
    names, values = [ln for ln in lines if ln and ln[0] == "Udp:"][:2]
    return dict(zip(names[1:], (int(v) for v in values[1:]), strict=True))


async def expect(conn: Connection, kind: str, timeout_s: float) -> Any:
    """The sender's next message, which must be ``kind``, within ``timeout_s``."""
    if not await asyncio.to_thread(conn.poll, timeout_s):
        raise RuntimeError(f"the sender sent no {kind!r} within {timeout_s} s")
    try:
        got, payload = conn.recv()
    except EOFError:
        raise RuntimeError(f"the sender ended before its {kind!r}") from None
    if got != kind:
        raise RuntimeError(f"the sender sent {got!r}, not {kind!r}")
    return payload


def end_process(proc: mp.process.BaseProcess) -> str:
    """Join the sender; terminate it, then kill it, if it does not end. Says which."""
    proc.join(JOIN_TIMEOUT_S)
    if not proc.is_alive():
        return "ended"
    proc.terminate()
    proc.join(2)
    if not proc.is_alive():
        return "terminated"
    proc.kill()
    proc.join(2)
    return "killed"


async def run_round(
    legs: int, params: DetectorParams, tap: LogTap, sender_cpus: list[int]
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    done = ctx.RawArray("b", legs)
    stop = ctx.RawValue("b", 0)
    ours, theirs = ctx.Pipe()
    proc = ctx.Process(
        target=sender_main,
        args=(theirs, done, stop, legs, CAP_S, sender_cpus),
        name="unicast-sender",
        daemon=True,
    )
    proc.start()
    theirs.close()
    try:
        await expect(ours, "ready", READY_TIMEOUT_S)
        result = await judge(legs, params, tap, ours, done, stop)
    finally:
        stop.value = 1
        ending = end_process(proc)
        ours.close()
    result["sender"]["process"] = ending
    return result


async def judge(
    legs: int, params: DetectorParams, tap: LogTap, conn: Connection, done: Any, stop: Any
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    names = [str(uuid.uuid4()) for _ in range(legs)]
    index = {leg: i for i, leg in enumerate(names)}
    verdicts: dict[str, tuple[Verdict, float]] = {}
    all_in = asyncio.Event()

    def on_verdict(leg: str, verdict: Verdict) -> None:
        verdicts[leg] = (verdict, loop.time())
        done[index[leg]] = 1  # the daemon moves the leg on: its stream ends
        if len(verdicts) == legs:
            all_in.set()

    tap.reset()
    answered: dict[str, float] = {}
    server = UnicastAudioServer(
        on_verdict,
        params=params,
        host=HOST,
        ports=(0, 0),
        first_audio_timeout_s=FIRST_AUDIO_TIMEOUT_S,
        max_sessions=legs,
    )
    try:
        ports = []
        for leg in names:
            answered[leg] = loop.time()
            ports.append(await server.open(leg, answered_at=answered[leg], source_host=HOST))
        before = udp_counters()
        cpu0, times0, t0 = time.process_time(), os.times(), loop.time()
        conn.send(("go", ports))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(params.deadline_ms / 1000 + 5.0):
                await all_in.wait()
        cpu1, times1, t1 = time.process_time(), os.times(), loop.time()
        stop.value = 1
        sender = await expect(conn, "report", REPORT_TIMEOUT_S)
    finally:
        await server.close()
    after = udp_counters()
    window = Window(
        cpu_s=cpu1 - cpu0,
        user_s=times1.user - times0.user,
        system_s=times1.system - times0.system,
        wall_s=t1 - t0,
    )
    return figures(legs, names, answered, verdicts, tap, sender, before, after, window)


def figures(
    legs: int,
    names: list[str],
    answered: dict[str, float],
    verdicts: dict[str, tuple[Verdict, float]],
    tap: LogTap,
    sender: dict[str, Any],
    before: dict[str, int],
    after: dict[str, int],
    window: Window,
) -> dict[str, Any]:
    correct = default = other = 0
    lags: list[float] = []
    lags_decided: list[float] = []
    lags_by_voice: dict[str, list[float]] = {"HUMAN": [], "MACHINE": []}
    decided: dict[str, list[float]] = {"HUMAN": [], "MACHINE": []}
    for i, leg in enumerate(names):
        if leg not in verdicts:
            continue
        verdict, at = verdicts[leg]
        if verdict.reason in DEFAULT_REASONS:
            default += 1
            continue
        # The deciding datagram is the last one counted; it left the sender on schedule.
        last = int(tap.closed[leg]["datagrams"]) - 1
        lags.append(at - sent_at(sender["t0"], i, last))
        lags_by_voice[expected_kind(i).value].append(lags[-1])
        lags_decided.append(at - answered[leg] - verdict.decided_at_ms / 1000)
        if verdict.kind is expected_kind(i):
            correct += 1
            decided[verdict.kind.value].append(verdict.decided_at_ms / 1000)
        else:
            other += 1
    kernel = {name: after[name] - before[name] for name in after}
    sent = sum(sender["sent"])
    counted = sum(int(e["datagrams"]) for e in tap.closed.values())
    refused = sum(int(e["malformed"]) + int(e["foreign"]) for e in tap.closed.values())
    dropped = kernel["InErrors"]
    read = kernel["InDatagrams"]
    lag = quantiles_ms(lags)
    return {
        "legs": legs,
        "verdicts": len(verdicts),
        "correct": correct,
        "default": default,
        "other": other,
        "lag": lag,
        "lag_by_voice": {voice: quantiles_ms(times) for voice, times in lags_by_voice.items()},
        "lag_by_decided_at": quantiles_ms(lags_decided),
        "decided_at": {kind: quantiles_ms(times) for kind, times in decided.items()},
        "receiver_cpu_per_s": window.per_s(window.cpu_s),
        "receiver_user_per_s": window.per_s(window.user_s),
        "receiver_system_per_s": window.per_s(window.system_s),
        "receiver_cpu_ms_per_leg": round(window.cpu_s * 1000 / legs, 2),
        # Legs streaming at once that a whole core would carry at this CPU per leg-second.
        "legs_per_core": round(counted * FRAME_S / window.cpu_s) if window.cpu_s > 0 else None,
        "streaming_s": round(window.wall_s, 2),
        # The N opens, one after the other: the first legs' deadlines started this much
        # before the last leg's, and before any audio was sent.
        "opening_s": round(max(answered.values()) - min(answered.values()), 3),
        "datagrams": {
            "sent": sent,
            "send_errors": sender["send_errors"],
            "to_detector": counted,
            "refused_malformed_or_foreign": refused,
            "dropped_by_kernel": dropped,
            "rcvbuf_errors": kernel["RcvbufErrors"],
            "after_verdict": sent - counted - refused - dropped,
            "after_verdict_read_and_ignored": read - counted - refused,
            "after_verdict_to_closed_port": kernel["NoPorts"],
            "after_verdict_left_in_buffer": sent - read - kernel["NoPorts"] - dropped,
        },
        "warnings": dict(tap.warnings),
        "sender": {k: v for k, v in sender.items() if k not in ("sent", "t0")},
    }


async def bench(
    counts: list[int], params: DetectorParams, tap: LogTap, sender_cpus: list[int]
) -> list[dict[str, Any]]:
    rows = []
    for legs in counts:
        row = await run_round(legs, params, tap, sender_cpus)
        rows.append(row)
        print_row(row)
    return rows


HEADER = (
    f"  {'legs':>5} {'verdicts':>9} {'correct':>8} {'default':>8} {'other':>6} "
    f"{'lag p50':>8} {'lag max':>8} {'CPU/s':>6} {'CPU ms/leg':>10} "
    f"{'legs/core':>9} {'sent':>7} {'detector':>8} {'dropped':>8} {'snd late':>8}"
)


def print_row(row: dict[str, Any]) -> None:
    lag = row["lag"]
    p50 = f"{lag['p50_ms']:.0f}ms" if lag["n"] else "-"
    worst = f"{lag['max_ms']:.0f}ms" if lag["n"] else "-"
    grams = row["datagrams"]
    print(
        f"  {row['legs']:>5} {row['verdicts']:>5}/{row['legs']:<3} {row['correct']:>8} "
        f"{row['default']:>8} {row['other']:>6} {p50:>8} {worst:>8} "
        f"{row['receiver_cpu_per_s']:>6.2f} {row['receiver_cpu_ms_per_leg']:>10.1f} "
        f"{row['legs_per_core']:>9} {grams['sent']:>7} {grams['to_detector']:>8} "
        f"{grams['dropped_by_kernel']:>8} "
        f"{row['sender']['late_max_ms']:>6.1f}ms",
        flush=True,
    )


def leg_counts(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of leg counts, each 1 or more")
    return counts


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 and 50 legs only")
    parser.add_argument("--legs", type=leg_counts, help="leg counts, e.g. 10,50,400")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    counts = args.legs or list(QUICK if args.quick else FULL)
    cpus = sorted(os.sched_getaffinity(0))
    receiver_cpu = pin_to_one_core()
    sender_cpus = [c for c in cpus if c != receiver_cpu] or cpus
    params = detector_params(Config().standards_for().amd)
    tap = LogTap()
    ran_on = machine()
    with null_stream() as sink:
        configure_logging(fmt="json", level="info", stream=sink, tap=tap)
        print(
            f"Unicast receiver, N legs answered at once, real-time 20 ms datagrams from a "
            f"second process; receiver on CPU {'any' if receiver_cpu is None else receiver_cpu}"
            f", sender on CPU {','.join(map(str, sender_cpus))}; deadline {params.deadline_ms} ms"
        )
        print(HEADER)
        rows = asyncio.run(bench(counts, params, tap, sender_cpus))
    if args.json:
        write_json(
            args.json,
            {
                "machine": ran_on,
                "receiver_cpu": receiver_cpu,
                "sender_cpus": sender_cpus,
                "deadline_ms": params.deadline_ms,
                "cap_s": CAP_S,
                "rounds": rows,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
