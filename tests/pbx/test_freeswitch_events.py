"""ESL events to neutral events, on the FreeSWITCH 1.10.12 transcripts and on what they show."""

from __future__ import annotations

from typing import Any

from pbx_agent.amd.params import DetectorParams
from pbx_agent.model import events as ev
from pbx_agent.model.events import Direction, LegId
from pbx_agent.pbx.freeswitch_events import (
    FreeswitchTranslator,
    agents_from_callcenter,
    endpoint_of,
)
from pbx_agent.policies.callbacks import FREESWITCH_CAUSES
from pbx_agent.testing.fake_freeswitch_model import ChannelModel, FakeChannel
from pbx_agent.wire.esl import EslEvent
from tests.engine.builders import created
from tests.pbx.freeswitch_traces import (
    bgapi_jobs,
    of_type,
    originated_uuids,
    replay,
    timed_events,
)

TALK_TRACE = "04-talk-notalk-rtp-vad-plain"
ERIN = "96491e62-85e4-4bbe-8d12-564db54ba180"  # A-leg: plays speech
FRANK = "650fb719-b542-42ec-8a49-af35ba2fb2e9"  # B-leg: silent; TALK/NOTALK fire here
# erin's speech as measured on her RTP (the transcript's notes), seconds after connect.
ERIN_SPEECH = [(2.025, 5.025), (9.565, 11.685), (20.065, 23.065), (27.605, 29.725)]
ALICE = "559d98b1-6670-4be9-adee-4406d6575018"  # 03a: presses hold
DAVE = "0a33e460-7ca9-4c81-8dbd-045312a7fa54"  # 03a: hears the hold music
BROKEN = "03b-hold-broadcast-to-moh-leg-breaks-unhold-json"
ALICE_03B = "ff131836-0c24-45f8-ac53-18fc9a682a49"
DAVE_03B = "44102397-2676-4110-ad7d-97bcbfdc112e"


def test_legs_of_a_bridge_share_the_a_legs_call() -> None:
    """The B-leg of a bridge belongs to its A-leg's call (Channel-Call-UUID, 02c)."""
    created = [
        e for _, e in of_type(replay("02c-originate-bridge-callee-hangs-up-plain"), ev.LegCreated)
    ]
    assert len(created) == 2
    a_leg, b_leg = created
    assert a_leg.call == b_leg.call == a_leg.leg
    assert b_leg.direction is Direction.OUTBOUND
    assert b_leg.endpoint == "sofia/internal/carol"


def test_a_bridge_joins_both_legs_to_one_neutral_bridge() -> None:
    """CHANNEL_BRIDGE on the A-leg puts both legs in the same bridge (02c)."""
    events = replay("02c-originate-bridge-callee-hangs-up-plain")
    joined = [e for _, e in of_type(events, ev.LegJoinedBridge)]
    assert len(joined) == 2
    assert joined[0].bridge == joined[1].bridge
    assert {j.leg for j in joined} == {e.leg for _, e in of_type(events, ev.LegCreated)}


def test_the_callee_hanging_up_is_normal_clearing_on_both_legs() -> None:
    """The callee's BYE ends both legs with NORMAL_CLEARING, Q.850 16 (02c)."""
    ended = [
        e for _, e in of_type(replay("02c-originate-bridge-callee-hangs-up-plain"), ev.LegHungUp)
    ]
    assert [(e.cause, e.cause_text, e.media_timeout) for e in ended] == [
        (16, "NORMAL_CLEARING", False),
        (16, "NORMAL_CLEARING", False),
    ]


def test_hold_is_pressed_on_the_holding_leg_and_music_plays_on_the_other() -> None:
    """CHANNEL_HOLD is alice's; dave's local_stream://moh playback is his hold music (03a)."""
    events = replay("03a-hold-unhold-broadcast-to-held-leg-plain")
    pressed = of_type(events, ev.HoldPressed)
    music = of_type(events, ev.MusicOnHoldStarted)
    assert [e.leg for _, e in pressed] == [ALICE]
    assert [(e.leg, e.music_class) for _, e in music] == [(DAVE, "moh")]
    assert 0.1 < music[0][0] - pressed[0][0] < 0.3  # ~160 ms later


def test_the_music_stops_before_the_unhold_is_reported() -> None:
    """At unhold dave's music ends first, then CHANNEL_UNHOLD (03a)."""
    events = replay("03a-hold-unhold-broadcast-to-held-leg-plain")
    kinds = [
        type(e).__name__
        for _, e in events
        if isinstance(e, ev.MusicOnHoldStopped | ev.HoldReleased)
    ]
    assert kinds == ["MusicOnHoldStopped", "HoldReleased"]


def test_a_broadcast_to_the_holding_leg_is_not_taken_for_hold_music() -> None:
    """The file broadcast to alice while she holds is not music on hold (03a)."""
    events = replay("03a-hold-unhold-broadcast-to-held-leg-plain")
    assert [e.leg for _, e in of_type(events, ev.MusicOnHoldStarted)] == [DAVE]


def test_hold_music_a_broadcast_broke_is_still_reported_after_unhold() -> None:
    """After a broadcast to the music leg, unhold does not stop the music; the translator
    still says dave hears it (03b)."""
    translator = FreeswitchTranslator()
    events = replay(BROKEN, translator, until=19.0)
    assert of_type(events, ev.HoldReleased)
    assert not of_type(events, ev.MusicOnHoldStopped)
    assert translator.hears_hold_music(DAVE_03B)


def test_a_hang_up_is_reported_even_when_it_never_completes() -> None:
    """alice's CHANNEL_HANGUP is enough: her hang-up does not complete until dave's (03b)."""
    ended = of_type(replay(BROKEN), ev.LegHungUp)
    assert ended[0][1].leg == ALICE_03B
    assert 27.3 < ended[0][0] < 27.5  # at the uuid_kill, 8 s before the B-leg's


def test_talk_on_the_silent_leg_is_the_speech_of_its_peer() -> None:
    """TALK fires on frank's leg for erin's speech: the speaker is erin (04)."""
    events = replay(TALK_TRACE)
    started = of_type(events, ev.TalkingStarted)
    assert {e.leg for _, e in started} == {ERIN}


def test_the_vad_blips_inside_continuous_speech_are_debounced() -> None:
    """One speech per burst, not one per 0.8 s NOTALK/TALK pair (04)."""
    events = replay(TALK_TRACE)
    assert len(of_type(events, ev.TalkingStarted)) == 5
    assert len(of_type(events, ev.TalkingStopped)) == 5


def test_speech_starts_within_80_ms_of_its_onset() -> None:
    """TALK comes 8-73 ms after the onset on erin's RTP (04)."""
    started = [t for t, _ in of_type(replay(TALK_TRACE), ev.TalkingStarted)]
    for (onset, _), t in zip(ERIN_SPEECH, started, strict=False):
        assert 0 <= t - onset < 0.08


def test_the_end_of_speech_is_put_where_it_really_was() -> None:
    """The reported end (now - silence_ms) lands within 150 ms of the real end (04)."""
    stopped = of_type(replay(TALK_TRACE), ev.TalkingStopped)
    for (_, end), (t, e) in zip(ERIN_SPEECH, stopped, strict=False):
        assert abs((t - e.silence_ms / 1000.0) - end) < 0.15
        assert e.speech_ms is not None


def test_the_first_notalk_of_each_leg_starts_no_speech() -> None:
    """The NOTALK each leg sends ~0.8 s after media starts, with no TALK before, is ignored."""
    events = replay(TALK_TRACE, until=1.0)
    assert not of_type(events, ev.TalkingStarted)
    assert not of_type(events, ev.TalkingStopped)


def test_originate_outcomes_come_from_background_jobs() -> None:
    """answered, busy (486), rejected (603), no answer twice, unreachable (07a)."""
    name = "07a-originate-outcomes-plain"
    translator = FreeswitchTranslator()
    for job, uuid in zip(bgapi_jobs(name), originated_uuids(name), strict=True):
        translator.expect_origination(f"req-{uuid[:4]}", uuid, "callback", job=job)
    outcomes = [e for _, e in of_type(replay(name, translator), ev.OriginateOutcome)]
    assert [(o.outcome, o.cause, o.cause_text) for o in outcomes] == [
        ("answered", None, ""),
        ("busy", 17, "USER_BUSY"),
        ("rejected", 21, "CALL_REJECTED"),
        ("no_answer", 19, "NO_ANSWER"),
        ("no_answer", 19, "NO_ANSWER"),
        ("failed", 41, "NORMAL_TEMPORARY_FAILURE"),
    ]


def test_a_refused_originate_carries_the_sip_status() -> None:
    """The busy leg's hang-up says 486 (sip_term_status, 07a)."""
    name = "07a-originate-outcomes-plain"
    translator = FreeswitchTranslator()
    for job, uuid in zip(bgapi_jobs(name), originated_uuids(name), strict=True):
        translator.expect_origination(uuid, uuid, "callback", job=job)
    outcomes = {o.cause_text: o for _, o in of_type(replay(name, translator), ev.OriginateOutcome)}
    assert outcomes["USER_BUSY"].tech_cause == "486"
    assert outcomes["USER_BUSY"].leg is not None


def test_a_dead_leg_is_a_media_timeout_and_the_survivor_says_so() -> None:
    """The dead B-leg: MEDIA_TIMEOUT; the A-leg NORMAL_CLEARING with the peer's cause (07b)."""
    ended = [
        e
        for _, e in of_type(
            replay("07b-bridged-call-far-end-dies-media-timeout-plain"), ev.LegHungUp
        )
    ]
    dead, survivor = ended
    assert (dead.cause, dead.cause_text, dead.media_timeout) == (
        FREESWITCH_CAUSES["MEDIA_TIMEOUT"],
        "MEDIA_TIMEOUT",
        True,
    )
    assert (survivor.cause, survivor.media_timeout, survivor.peer_cause) == (
        16,
        False,
        "MEDIA_TIMEOUT",
    )


def test_a_bridge_leg_timeout_is_allotted_timeout_on_both_legs() -> None:
    """leg_timeout on a ringing B-leg: ALLOTTED_TIMEOUT, FreeSWITCH's own 602 (07c)."""
    ended = [
        e
        for _, e in of_type(
            replay("07c-bridge-to-ringing-leg-timeout-and-cancel-plain"), ev.LegHungUp
        )
    ]
    assert [e.cause_text for e in ended[:2]] == ["ALLOTTED_TIMEOUT", "ALLOTTED_TIMEOUT"]
    assert ended[0].cause == FREESWITCH_CAUSES["ALLOTTED_TIMEOUT"]


def test_a_ringing_leg_cancelled_by_its_caller_is_originator_cancel() -> None:
    """The A-leg killed while B rings: B ORIGINATOR_CANCEL, A NORMAL_CLEARING (07c)."""
    ended = [
        e
        for _, e in of_type(
            replay("07c-bridge-to-ringing-leg-timeout-and-cancel-plain"), ev.LegHungUp
        )
    ]
    assert sorted(e.cause_text for e in ended[2:]) == ["NORMAL_CLEARING", "ORIGINATOR_CANCEL"]


def _with_created_leg(uuid: str) -> FreeswitchTranslator:
    """A translator that knows ``uuid`` (trace 06 subscribed to no CHANNEL_CREATE)."""
    translator = FreeswitchTranslator()
    translator.feed(EslEvent((("Event-Name", "CHANNEL_CREATE"), ("Unique-ID", uuid))), 0.0)
    return translator


def test_a_voicemail_beep_makes_a_machine_once_though_avmd_reports_it_twice() -> None:
    """avmd::beep twice with one Event-Sequence: one beep, MACHINE tone-951hz (06)."""
    hank = "c02d44f1-cf02-4df2-ac3e-564fa9d83463"
    translator = _with_created_leg(hank)
    params = DetectorParams(no_speech_ms=10000, max_analysis_ms=10000, deadline_ms=12000)
    translator.detect_machine(hank, params, deadline_ms=12000)
    verdicts = of_type(replay("06-avmd-voicemail-beep-plain", translator), ev.MachineDetected)
    assert [(e.verdict, e.cause) for _, e in verdicts] == [("machine", "tone-951hz")]
    assert 7.9 < verdicts[0][0] < 8.2


def test_silence_on_a_leg_nothing_listens_to_is_not_a_machine() -> None:
    """A callee never bridged to a listener cannot be heard: NOTSURE, whatever silence
    would mean (06)."""
    hank = "c02d44f1-cf02-4df2-ac3e-564fa9d83463"
    translator = _with_created_leg(hank)
    translator.detect_machine(hank, DetectorParams(), deadline_ms=6000)
    verdicts = of_type(replay("06-avmd-voicemail-beep-plain", translator), ev.MachineDetected)
    assert [e.verdict for _, e in verdicts] == ["notsure"]
    assert verdicts[0][1].cause.startswith("no-talk-detection")


# -- synthetic sequences built by the fake switch's channel model --------------------------


class Switch:
    """The fake FreeSWITCH's channel model, its events fed straight to a translator."""

    def __init__(self, **translator: Any) -> None:
        self.now = 100.0
        self.translator = FreeswitchTranslator(**translator)
        self.out: list[ev.PbxEvent] = []
        self.model = ChannelModel(self._emit, now=lambda: self.now)

    def _emit(self, event: EslEvent) -> None:
        self.out.extend(self.translator.feed(event, self.now))

    def at(self, seconds: float) -> list[ev.PbxEvent]:
        """Let time pass to ``seconds`` after the start; what came out meanwhile."""
        self.now = 100.0 + seconds
        self.out.extend(self.translator.poll(self.now))
        return self.take()

    def take(self) -> list[ev.PbxEvent]:
        taken, self.out = self.out, []
        return taken

    def bridged_call(
        self, *, b_variables: dict[str, str] | None = None
    ) -> tuple[FakeChannel, FakeChannel]:
        caller = self.model.inbound("79161234567", "Иван", "100")
        self.model.answer(caller)
        agent = self.model.outbound(
            "sofia/internal/agent-1001@127.0.0.1",
            uuid=None,
            caller_number="79161234567",
            caller_name="",
            variables=b_variables or {},
            originator=caller,
        )
        self.model.answer(agent)
        self.model.bridge(caller, agent)
        self.take()
        return caller, agent


def test_a_notalk_followed_by_talk_within_the_debounce_does_not_end_speech() -> None:
    """NOTALK then TALK 100 ms later: the speech goes on."""
    switch = Switch()
    caller, agent = switch.bridged_call()
    switch.model.talk(agent, talking=True)  # the caller speaks
    switch.at(0.8)
    switch.model.talk(agent, talking=False)
    switch.at(0.9)
    switch.model.talk(agent, talking=True)
    assert switch.at(2.0) == []


def test_a_notalk_not_followed_by_talk_ends_speech_after_the_debounce() -> None:
    """The end is reported after the debounce, put notalk_lag_ms before the NOTALK."""
    switch = Switch(talk_debounce_ms=200, notalk_lag_ms=400)
    caller, agent = switch.bridged_call()
    switch.model.talk(agent, talking=True)
    switch.take()
    switch.at(0.8)
    switch.model.talk(agent, talking=False)  # one of the VAD's blips
    switch.at(0.84)
    switch.model.talk(agent, talking=True)
    switch.at(1.5)
    switch.model.talk(agent, talking=False)
    assert switch.at(1.6) == []
    stopped = switch.at(1.75)
    assert stopped == [ev.TalkingStopped(caller.uuid, silence_ms=650, speech_ms=1100)]


def test_talk_on_a_leg_alone_is_the_switchs_own_audio() -> None:
    """A leg with no peer hears only the switch (a prompt): its TALK is no party's speech."""
    switch = Switch()
    caller = switch.model.inbound("79161234567", "Иван", "100")
    switch.model.answer(caller)
    switch.take()
    switch.model.talk(caller, talking=True)
    assert switch.take() == []


def test_talk_while_a_prompt_plays_to_the_leg_is_not_its_peers_speech() -> None:
    """A playback on the agent's leg makes TALK there; it is not the caller speaking."""
    switch = Switch()
    _caller, agent = switch.bridged_call()
    switch.model.execute(agent, "playback", "/sounds/pbx-agent/ru/abuse-warning.wav", "app-1")
    switch.model.talk(agent, talking=True)
    assert not [e for e in switch.take() if isinstance(e, ev.TalkingStarted)]


def test_a_listener_bridge_is_not_reported_but_lets_the_lone_party_be_heard() -> None:
    """A caller bridged to a listener (pbx_agent_helper) is alone for the call model, and
    the listener's TALK is the caller's speech."""
    switch = Switch()
    caller, listener = switch.bridged_call(b_variables={"pbx_agent_helper": "listen"})
    switch.model.talk(listener, talking=True)
    out = switch.take()
    assert out == [ev.TalkingStarted(caller.uuid)]


def test_a_listener_leg_is_created_as_a_helper() -> None:
    """The listener's LegCreated says origin helper: never a party."""
    switch = Switch()
    caller = switch.model.inbound("79161234567", "Иван", "100")
    switch.model.outbound(
        "sofia/internal/pbxagent_listen@127.0.0.1",
        uuid=None,
        caller_number="1",
        caller_name="",
        variables={"pbx_agent_helper": "listen"},
        originator=caller,
    )
    created = [e for e in switch.take() if isinstance(e, ev.LegCreated)]
    assert [c.origin for c in created] == [None, "helper"]


def test_dtmf_is_a_digit_of_the_leg_that_pressed_it() -> None:
    """DTMF on the caller's leg is the caller's digit."""
    switch = Switch()
    caller, _agent = switch.bridged_call()
    switch.model.dtmf(caller, "1")
    assert switch.take() == [ev.DigitPressed(caller.uuid, "1")]


def test_an_event_application_with_the_feature_header_is_a_feature_code() -> None:
    """bind_meta_app's ``event pbx_agent_feature=<name>`` on the agent's channel."""
    switch = Switch()
    _caller, agent = switch.bridged_call()
    switch.model.fire(
        "CHANNEL_APPLICATION", agent, suffix=[("pbx_agent_feature", "pbxagent_abuse")]
    )
    assert switch.take() == [ev.FeatureRequested(agent.uuid, "pbxagent_abuse")]


def test_callcenter_bridge_agent_start_names_the_agent_and_queue() -> None:
    """mod_callcenter's bridge-agent-start is AgentConnected."""
    switch = Switch()
    caller, agent = switch.bridged_call()
    core = [("Event-Subclass", "callcenter::info"), *switch.model.core("CUSTOM")]
    switch.model.fire(
        "CUSTOM",
        agent,
        core=core,
        suffix=[
            ("CC-Queue", "support@default"),
            ("CC-Action", "bridge-agent-start"),
            ("CC-Agent", "1001@default"),
            ("CC-Agent-UUID", agent.uuid),
            ("CC-Member-Session-UUID", caller.uuid),
        ],
    )
    assert switch.take() == [
        ev.AgentConnected(caller.uuid, agent.uuid, "1001@default", "support@default")
    ]


def test_a_watched_variable_set_by_the_dialplan_is_reported_once() -> None:
    """``set PBXAGENT_TIER=senior`` (CHANNEL_EXECUTE) is a LegVariable; the same value again is not."""
    switch = Switch(watched_variables=frozenset({"PBXAGENT_TIER"}))
    _caller, agent = switch.bridged_call()
    switch.model.execute(agent, "set", "PBXAGENT_TIER=senior", "app-1")
    switch.model.execute(agent, "set", "PBXAGENT_TIER=senior", "app-2")
    assert switch.take() == [ev.LegVariable(agent.uuid, "PBXAGENT_TIER", "senior")]


def test_a_daemon_prompt_ends_as_prompt_finished() -> None:
    """The end of a playback the daemon broadcast is PromptFinished, FILE PLAYED = ok."""
    switch = Switch()
    caller, _agent = switch.bridged_call()
    path = "/usr/share/freeswitch/sounds/pbx-agent/ru/silent-prompt.wav"
    switch.translator.expect_prompt(caller.uuid, path, "silent.prompt")
    switch.model.execute(caller, "playback", path, "app-1")
    switch.model.execute_complete(caller, "playback", path, "FILE PLAYED", "app-1")
    assert switch.take() == [ev.PromptFinished(caller.uuid, "silent.prompt", ok=True)]


def test_resync_rows_of_a_bridged_call_are_paired() -> None:
    """``show channels as json``: two ACTIVE legs of one call, the A-leg in bridge, are bridged."""
    translator = FreeswitchTranslator()
    rows = [
        {
            "uuid": "a",
            "call_uuid": "a",
            "callstate": "ACTIVE",
            "application": "bridge",
            "direction": "inbound",
            "name": "sofia/internal/1000@x",
            "cid_num": "1000",
        },
        {
            "uuid": "b",
            "call_uuid": "a",
            "callstate": "ACTIVE",
            "application": "",
            "direction": "outbound",
            "name": "sofia/internal/agent-1001@x",
            "cid_num": "1000",
        },
    ]
    live = translator.live_legs(rows)
    assert [(leg.created.leg, leg.answered, leg.bridge) for leg in live] == [
        ("a", True, "a+b"),
        ("b", True, "a+b"),
    ]
    assert translator.peer_of("a") == "b"


def test_the_endpoint_drops_the_host() -> None:
    """``sofia/internal/agent-1001@127.0.0.1:5181`` names the device ``sofia/internal/agent-1001``."""
    assert endpoint_of("sofia/internal/agent-1001@127.0.0.1:5181") == "sofia/internal/agent-1001"


def test_every_trace_translates_without_error() -> None:
    """All transcripts go through the translator (a smoke check of every event shape)."""
    for name in (
        "02a-originate-answer-playback-hangup-plain",
        "02b-originate-answer-playback-hangup-json",
        "02d-originate-bridge-uuid-kill-json",
        "05a-outbound-socket-async-full",
        "06-avmd-voicemail-beep-json",
        "07a-originate-outcomes-json",
        "07b-bridged-call-far-end-dies-media-timeout-json",
        "07c-bridge-to-ringing-leg-timeout-and-cancel-json",
    ):
        assert timed_events(name)
        replay(name)


def test_a_late_notalk_does_not_lengthen_the_speech() -> None:
    """A NOTALK that arrives 2 s after the last TALK ends the speech one VAD period after it."""
    switch = Switch(talk_debounce_ms=200, notalk_lag_ms=400)
    caller, agent = switch.bridged_call()
    switch.model.talk(agent, talking=True)
    switch.take()
    switch.at(2.0)
    switch.model.talk(agent, talking=False)
    stopped = switch.at(2.3)
    assert stopped == [ev.TalkingStopped(caller.uuid, silence_ms=1450, speech_ms=850)]


def test_a_greeting_whose_end_arrives_late_is_not_made_a_machine() -> None:
    """ "Алло?" (0.6 s) whose NOTALK reaches the daemon 1.5 s late: still HUMAN, not a
    long greeting (the VAD vouches for speech only one period past its last TALK)."""
    switch = Switch()
    callee = switch.model.outbound(
        "sofia/gateway/trunk/79161234567",
        uuid="cb",
        caller_number="0",
        caller_name="",
        variables={},
    )
    switch.translator.detect_machine("cb", DetectorParams(), deadline_ms=6000)
    switch.model.answer(callee)
    listener = switch.model.outbound(
        "sofia/internal/pbxagent_listen@127.0.0.1",
        uuid=None,
        caller_number="0",
        caller_name="",
        variables={"pbx_agent_helper": "listen"},
        originator=callee,
    )
    switch.model.answer(listener)
    switch.model.bridge(callee, listener)
    switch.at(0.3)
    switch.model.talk(listener, talking=True)  # the callee says "Алло?"
    early = [
        e for t in range(4, 30) for e in switch.at(t / 10) if isinstance(e, ev.MachineDetected)
    ]
    assert early == []  # undecided while the NOTALK is missing
    switch.model.talk(listener, talking=False)  # arrives at 2.9 s instead of ~1.3 s
    late = [
        e for t in range(30, 50) for e in switch.at(t / 10) if isinstance(e, ev.MachineDetected)
    ]
    assert [(v.verdict, v.cause) for v in late] == [("human", "answer-then-silence")]


def test_a_resync_marks_the_peer_of_a_holding_leg_as_hearing_music() -> None:
    """After a reconnect, the leg whose peer is HELD hears music: no broadcast goes to it,
    and the unhold ends that music."""
    translator = FreeswitchTranslator()
    rows = [
        {"uuid": "a", "call_uuid": "a", "callstate": "HELD", "application": "bridge"},
        {"uuid": "b", "call_uuid": "a", "callstate": "ACTIVE", "application": ""},
    ]
    live = translator.live_legs(rows)
    assert [(leg.created.leg, leg.on_hold_music) for leg in live] == [("a", False), ("b", True)]
    assert translator.hears_hold_music("b")
    unhold = EslEvent((("Event-Name", "CHANNEL_UNHOLD"), ("Unique-ID", "a")))
    assert translator.feed(unhold, 1.0) == [ev.MusicOnHoldStopped("b"), ev.HoldReleased("a")]
    assert not translator.hears_hold_music("b")


def test_hold_music_whose_end_was_lost_in_an_outage_ends_at_the_next_resync() -> None:
    """The customer hears hold music when the link goes; the agent resumes during the
    outage (CHANNEL_UNHOLD and the music's end are lost). The next resync lists nobody
    HELD: the customer no longer hears music, so their talk is theirs again."""
    translator = FreeswitchTranslator()
    held = [
        {"uuid": "a", "call_uuid": "a", "callstate": "HELD", "application": "bridge"},
        {"uuid": "b", "call_uuid": "a", "callstate": "ACTIVE", "application": ""},
    ]
    translator.live_legs(held)
    assert translator.hears_hold_music("b")
    resumed = [dict(row, callstate="ACTIVE") for row in held]
    live = translator.live_legs(resumed)
    assert [(leg.created.leg, leg.on_hold_music) for leg in live] == [("a", False), ("b", False)]
    assert not translator.hears_hold_music("b")


def test_a_callback_legs_caller_number_is_the_customer_dialled() -> None:
    """The originated leg's Caller-Caller-ID-Number is the daemon's own caller ID: an
    abnormal drop of a connected callback would have asked for a callback to it."""
    name = "07a-originate-outcomes-plain"
    translator = FreeswitchTranslator()
    uuids = originated_uuids(name)
    for job, uuid in zip(bgapi_jobs(name), uuids, strict=True):
        translator.expect_origination(uuid, uuid, "callback", job=job, callee="+79161234567")
    created = [e for _, e in of_type(replay(name, translator), ev.LegCreated)]
    ours = [e.caller_number for e in created if e.leg in uuids]
    assert ours
    assert set(ours) == {"+79161234567"}
    plain = [e for _, e in of_type(replay(name), ev.LegCreated)]
    assert "+79161234567" not in {e.caller_number for e in plain}


def _cc_bridged(caller: str, agent: str, bridge: str) -> list[ev.LiveLeg]:
    device = "sofia/internal/agent@127.0.0.1"
    return [
        ev.LiveLeg(created(caller, caller), True, bridge),
        ev.LiveLeg(
            created(agent, caller, endpoint=device, direction=Direction.OUTBOUND), True, bridge
        ),
    ]


def _cc_agent(name: str, uuid: str, state: str = "In a queue call") -> dict[str, str]:
    return {"name": name, "instance_id": "single_box", "uuid": uuid, "state": state}


def _cc_tier(queue: str, agent: str, state: str) -> dict[str, str]:
    return {"queue": queue, "agent": agent, "state": state, "level": "1", "position": "1"}


def test_callcenter_lists_name_the_agents_a_resync_found() -> None:
    """An unseen bridged leg that is an agent's channel while the agent is in a queue call
    is that agent, in the queue where its tier is Active Inbound; several active tiers give
    no queue; an agent no longer in the call, a channel two agents claim and a leg already
    named are left as they are."""
    legs = [
        *_cc_bridged("c1", "a1", "b1"),
        *_cc_bridged("c2", "a2", "b2"),
        *_cc_bridged("c3", "a3", "b3"),
        *_cc_bridged("c4", "a4", "b4"),
        *_cc_bridged("c5", "a5", "b5"),
    ]
    agents = [
        _cc_agent("1001@default", "a1"),
        _cc_agent("1002@default", "a2"),
        _cc_agent("1003@default", "a3", state="Waiting"),  # its call ended
        _cc_agent("1004@default", "a4"),
        _cc_agent("1005@default", "a4"),
        _cc_agent("1006@default", "a5"),
    ]
    tiers = [
        _cc_tier("sales@default", "1001@default", "Ready"),
        _cc_tier("support@default", "1001@default", "Active Inbound"),
        _cc_tier("support@default", "1002@default", "Active Inbound"),
        _cc_tier("sales@default", "1002@default", "active inbound"),
    ]
    unseen = {"c1", "a1", "c2", "a2", "c3", "a3", "c4", "a4"}  # a5 was named live
    assert agents_from_callcenter(legs, agents, tiers, unseen) == [
        ev.AgentConnected(LegId("c1"), LegId("a1"), "1001@default", "support@default"),
        ev.AgentConnected(LegId("c2"), LegId("a2"), "1002@default", ""),
    ]


def test_callcenter_rows_missing_fields_name_nobody() -> None:
    """Rows without a name, a uuid or a state, and tiers without a queue: nothing is
    invented, nothing raises; a name full of control characters is passed on as the switch
    gave it (the log and every command escape it)."""
    legs = _cc_bridged("c1", "a1", "b1")
    agents = [{"uuid": "a1", "state": "In a queue call"}, {"name": "1001@default"}, {}]
    tiers = [{"agent": "1001@default", "state": "Active Inbound"}, {}]
    assert agents_from_callcenter(legs, agents, tiers, {"c1", "a1"}) == []
    forged = [_cc_agent("Eve\r\nEvent-Name: FORGED", "a1")]
    assert agents_from_callcenter(legs, forged, [], {"c1", "a1"}) == [
        ev.AgentConnected(LegId("c1"), LegId("a1"), "Eve\r\nEvent-Name: FORGED", "")
    ]
