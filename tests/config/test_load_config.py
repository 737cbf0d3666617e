"""load_config: TOML + environment -> Config, or ConfigError listing every problem with its key."""

# Russian and Chinese phrases, not look-alike Latin

from __future__ import annotations

from pathlib import Path

import pytest

from pbx_agent.amd.params import DetectorTuning, detector_params
from pbx_agent.config import Config, ConfigError, ConfigProblem, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pbx-agent.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), env=env or {})
    assert caught.value.problems, "ConfigError without problems"
    return caught.value.problems


def by_key(found: list[ConfigProblem], key: str) -> ConfigProblem:
    matching = [p for p in found if p.key == key]
    assert matching, f"no problem keyed {key!r} in {[p.key for p in found]}"
    return matching[0]


def test_no_file_gives_the_embedded_defaults() -> None:
    """Without a file: ru profile, simulated PBX, SQLite under ./var/."""
    config = load_config(None, env={})
    assert (config.site.profile, config.pbx.kind) == ("ru", "simulated")
    assert config.store.url == "sqlite+aiosqlite:///./var/pbx-agent.sqlite3"


def test_toml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    """A TOML syntax error is reported with its line and column."""
    found = problems(tmp_path, '[site]\nprofile = "ru"\ntimezone = \n')
    assert len(found) == 1
    assert "line 3, column" in found[0].message
    assert found[0].accepted == "valid TOML"


def test_missing_file_is_a_problem(tmp_path: Path) -> None:
    """A path that does not exist is reported, keyed by the path."""
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.toml", env={})
    assert caught.value.problems[0].key == str(tmp_path / "absent.toml")
    assert caught.value.problems[0].message == "file not found"


def test_unknown_key_suggests_the_closest_known_key(tmp_path: Path) -> None:
    """A misspelt key is named, with the key it was probably meant to be."""
    found = problems(tmp_path, "[standards.hold]\nreminder_intervl_s = 30\n")
    problem = by_key(found, "standards.hold.reminder_intervl_s")
    assert problem.message == (
        "unknown key 'reminder_intervl_s'; did you mean 'reminder_interval_s'?"
    )
    assert "reminder_interval_s" in problem.accepted


def test_unknown_section_suggests_the_closest_section(tmp_path: Path) -> None:
    """A misspelt top-level section gets a suggestion too."""
    found = problems(tmp_path, '[asterix]\nami_host = "pbx"\n')
    assert "did you mean 'asterisk'?" in by_key(found, "asterix").message


def test_wrong_type_names_the_expected_type(tmp_path: Path) -> None:
    """A string where a number belongs is reported with what is accepted."""
    problem = by_key(
        problems(tmp_path, '[standards.hold]\nreminder_interval_s = "soon"\n'),
        "standards.hold.reminder_interval_s",
    )
    assert (problem.value, problem.accepted) == ("soon", "a number")


def test_silent_caller_step_outside_the_ru_range_is_rejected(tmp_path: Path) -> None:
    """A 7 s silent-caller step in ru is outside the standard's 2-3 s."""
    text = """
[standards.silent_caller]
steps = [{after_s = 7, prompt = "silent.prompt"}, {after_s = 2.5, prompt = "silent.closing"}]
"""
    problem = by_key(problems(tmp_path, text), "standards.silent_caller.steps[0].after_s")
    assert problem.value == "7"
    assert problem.accepted.startswith("2-3 s")


def test_widened_range_accepts_a_longer_step(tmp_path: Path) -> None:
    """A site that widens step_range_s on purpose may use a longer step."""
    text = """
[standards.silent_caller]
step_range_s = [2, 8]
steps = [{after_s = 7, prompt = "silent.prompt"}, {after_s = 2.5, prompt = "silent.closing"}]
"""
    config = load_config(write(tmp_path, text), env={})
    assert config.standards_for().silent_caller.steps[0].after_s == 7


def test_unknown_profile_lists_the_profiles(tmp_path: Path) -> None:
    """An unknown profile is reported with the profiles that exist."""
    problem = by_key(problems(tmp_path, '[site]\nprofile = "de"\n'), "site.profile")
    assert problem.value == "de"
    assert "'ru'" in problem.accepted
    assert "'zh'" in problem.accepted


def test_unknown_time_zone_is_rejected(tmp_path: Path) -> None:
    """The time zone must be known to zoneinfo."""
    problem = by_key(problems(tmp_path, '[site]\ntimezone = "Mars/Olympus"\n'), "site.timezone")
    assert problem.message == "unknown time zone"


@pytest.mark.parametrize("zone", ["Europe", "America", "A" * 300])
def test_a_region_alone_or_an_overlong_zone_is_a_problem_not_a_traceback(
    tmp_path: Path, zone: str
) -> None:
    """zoneinfo raises IsADirectoryError for a region folder and ENAMETOOLONG for a long
    name (both OSError): they escaped the check as tracebacks."""
    problem = by_key(problems(tmp_path, f'[site]\ntimezone = "{zone}"\n'), "site.timezone")
    assert problem.message == "unknown time zone"


@pytest.mark.parametrize("profile", ['["ru"]', "{ a = 1 }"])
def test_a_profile_that_is_not_a_string_is_a_problem_with_layers_present(
    tmp_path: Path, profile: str
) -> None:
    """With a standards layer in the file the profile was looked up raw: a list or table
    is unhashable and raised TypeError."""
    text = f"[site]\nprofile = {profile}\n[standards.hold]\nreminder_interval_s = 30\n"
    problem = by_key(problems(tmp_path, text), "site.profile")
    assert "not an accepted value" in problem.message


def test_bad_time_of_day_is_rejected(tmp_path: Path) -> None:
    """Times of day are 'HH:MM' between 00:00 and 23:59."""
    found = problems(tmp_path, '[standards.night_routing]\nwindow_start = "25:00"\n')
    problem = by_key(found, "standards.night_routing.window_start")
    assert (problem.value, problem.message) == ("25:00", "not a time of day")


def test_missing_phrase_key_is_reported_where_it_is_used(tmp_path: Path) -> None:
    """A prompt key with no phrase is reported at the key that references it."""
    text = """
[standards.silent_caller]
steps = [{after_s = 2.5, prompt = "silent.prompt"}, {after_s = 2.5, prompt = "silent.bye"}]
"""
    problem = by_key(problems(tmp_path, text), "standards.silent_caller.steps[1].prompt")
    assert problem.value == "silent.bye"


def test_night_notice_with_the_forbidden_word_is_rejected(tmp_path: Path) -> None:
    """The night notice may not say "хулиганство"."""
    text = '[standards.phrases]\n"night.notice" = "Ваши звонки похожи на хулиганство."\n'
    problem = by_key(problems(tmp_path, text), 'standards.phrases."night.notice"')
    assert "хулиганство" in problem.message


@pytest.mark.parametrize(
    "citation",
    [
        "статья 213",
        "ст. 213",
        "УК РФ",
        "119-ю статью УК",
        "статьёю 213",
        "статье сто девятнадцатой",
        "Уголовному кодексу",
        "xулиганство (with a Latin x)",
    ],
)
def test_night_notice_citing_a_legal_article_is_rejected(tmp_path: Path, citation: str) -> None:
    """The night notice may not cite a code article."""
    text = f'[standards.phrases]\n"night.notice" = "Согласно {citation}, мы вынуждены."\n'
    problem = by_key(problems(tmp_path, text), 'standards.phrases."night.notice"')
    assert "forbids" in problem.message


@pytest.mark.parametrize(
    "phrase",
    [
        "Перезвоним в течение 72 часов.",
        "Осталось 2 минуты.",
        "Вас соединят с 3 отделом.",
        "Чтобы стать первым в очереди, оставайтесь на линии.",
    ],
)
def test_numbers_that_cite_nothing_are_allowed(tmp_path: Path, phrase: str) -> None:
    """Hours, minutes and departments are no code articles."""
    text = f'[standards.phrases]\n"hold.resume" = "{phrase}"\n'
    load_config(write(tmp_path, text), env={})


def test_unknown_placeholder_in_a_phrase_is_rejected(tmp_path: Path) -> None:
    """Only {company} may be used as a placeholder."""
    text = '[standards.phrases]\n"hold.resume" = "Спасибо, {name}."\n'
    problem = by_key(problems(tmp_path, text), 'standards.phrases."hold.resume"')
    assert problem.message == "unknown placeholder {name}"


def test_ring_time_of_30_s_is_rejected(tmp_path: Path) -> None:
    """A callback must ring for more than 30 s."""
    found = problems(tmp_path, "[standards.callbacks]\nring_time_s = 30\n")
    problem = by_key(found, "standards.callbacks.ring_time_s")
    assert (problem.value, problem.accepted) == ("30", "> 30")


def test_quiet_hours_leaving_no_time_to_call_are_rejected(tmp_path: Path) -> None:
    """Quiet hours from 09:00 to 08:30 leave half an hour a day: too little to call back."""
    text = '[standards.callbacks.quiet_hours]\nstart = "09:00"\nend = "08:30"\n'
    problem = by_key(problems(tmp_path, text), "standards.callbacks.quiet_hours")
    assert problem.message == "quiet hours leave no time to call"


def test_empty_silent_caller_steps_are_rejected(tmp_path: Path) -> None:
    """The silent-caller procedure needs at least one step."""
    found = problems(tmp_path, "[standards.silent_caller]\nsteps = []\n")
    assert by_key(found, "standards.silent_caller.steps").accepted == "at least 1 item(s)"


def test_more_attempts_than_the_standard_allows_are_rejected(tmp_path: Path) -> None:
    """At most 3 callbacks."""
    found = problems(tmp_path, "[standards.callbacks]\nmax_attempts = 4\n")
    assert by_key(found, "standards.callbacks.max_attempts").accepted == "<= 3"


def test_callback_attempt_outside_the_window_is_rejected(tmp_path: Path) -> None:
    """Every attempt falls inside the callback window."""
    text = "[standards.callbacks]\nattempt_offsets_s = [30, 14400, 180000]\n"
    problem = by_key(problems(tmp_path, text), "standards.callbacks.attempt_offsets_s[2]")
    assert problem.message == "callback attempt falls outside the callback window"


def test_amd_deadline_shorter_than_the_analysis_is_rejected(tmp_path: Path) -> None:
    """The verdict deadline must leave the detector its analysis time."""
    found = problems(tmp_path, "[standards.amd]\ndeadline_ms = 3000\n")
    assert by_key(found, "standards.amd.deadline_ms").accepted.startswith(">= total_analysis")


def test_amd_detector_knobs_come_from_the_profile(tmp_path: Path) -> None:
    """standards.amd.detector overrides reach the detector; the rest keep their defaults."""
    text = "[standards.amd.detector]\nburst_gap_ms = 350\nvad_mode = 3\n"
    config = load_config(write(tmp_path, text), env={})
    params = detector_params(config.standards_for().amd)
    assert (params.burst_gap_ms, params.vad_mode) == (350, 3)
    assert params.min_burst_ms == DetectorTuning().min_burst_ms
    assert params.deadline_ms == config.standards_for().amd.deadline_ms


def test_amd_detector_problems_are_keyed_under_standards_amd_detector(tmp_path: Path) -> None:
    """A bad knob, an inconsistent pair and an analysis outlasting the deadline: all named."""
    text = (
        "[standards.amd]\ndeadline_ms = 6000\n"
        "[standards.amd.detector]\nmax_analysis_ms = 7000\nvad_mode = 9\nburst_gapms = 1\n"
    )
    found = problems(tmp_path, text)
    assert by_key(found, "standards.amd.detector.vad_mode").accepted.startswith("<= 3")
    assert (
        "did you mean 'burst_gap_ms'" in by_key(found, "standards.amd.detector.burst_gapms").message
    )
    text = "[standards.amd.detector]\nmax_analysis_ms = 7000\n"
    problem = by_key(problems(tmp_path, text), "standards.amd.detector.max_analysis_ms")
    assert problem.accepted == "<= deadline_ms (6000)"
    text = "[standards.amd.detector]\nspeech_margin_db = 12.0\nstrong_margin_db = 10.0\n"
    problem = by_key(problems(tmp_path, text), "standards.amd.detector.strong_margin_db")
    assert (problem.message, problem.accepted) == (
        "below speech_margin_db",
        "at least speech_margin_db (12.0)",
    )


def test_amd_override_in_a_queue_or_number_is_refused(tmp_path: Path) -> None:
    """Detection is set up once for every call placed: a layer's own would be ignored."""
    text = "[queues.vip.amd]\ndeadline_ms = 9000\n[dialed.8800.amd.detector]\nvad_mode = 3\n"
    found = problems(tmp_path, text)
    assert "site-wide" in by_key(found, "queues.vip.amd").message
    assert by_key(found, "dialed.8800.amd").accepted.startswith("standards.amd only")


def test_callback_scheduling_overrides_in_a_queue_or_number_are_refused(tmp_path: Path) -> None:
    """The scheduler dials every callback with the site's settings: a queue's own ring time
    or target would be accepted and never used, so they are refused; what is read per call
    (turning callbacks off, which drops count) stays allowed."""
    text = (
        '[queues.vip.callbacks]\nring_time_s = 60\ntarget = "vip_callbacks"\n'
        "agent_device_drop = false\none_way_audio = false\n"
        "[dialed.8800.callbacks]\nenabled = false\nattempt_offsets_s = [5, 600, 1200]\n"
    )
    found = problems(tmp_path, text)
    assert sorted(p.key for p in found) == [
        "dialed.8800.callbacks.attempt_offsets_s",
        "queues.vip.callbacks.one_way_audio",
        "queues.vip.callbacks.ring_time_s",
        "queues.vip.callbacks.target",
    ]
    assert "site-wide" in found[0].message


def test_a_one_way_audio_callback_the_scheduler_would_not_make_is_refused(
    tmp_path: Path,
) -> None:
    """zh §4's phrase promises a callback: with one-way-audio callbacks off the scheduler
    would drop the request, so promising it (site or queue) is refused."""
    site = '[site]\nprofile = "zh"\n[standards.callbacks]\none_way_audio = false\n'
    [problem] = problems(tmp_path, site)
    assert problem.key == "standards.silent_caller.one_way_audio_callback"
    assert "callbacks.one_way_audio" in problem.accepted
    queue = (
        "[standards.callbacks]\none_way_audio = false\n"
        "[queues.vip.silent_caller]\none_way_audio_callback = true\n"
    )
    assert [p.key for p in problems(tmp_path, queue)] == [
        "queues.vip.silent_caller.one_way_audio_callback"
    ]


def test_a_queue_cannot_turn_on_callbacks_the_site_turned_off(tmp_path: Path) -> None:
    """With callbacks off for the site the scheduler does not dial at all."""
    text = "[standards.callbacks]\nenabled = false\n[queues.vip.callbacks]\nenabled = true\n"
    assert [p.key for p in problems(tmp_path, text)] == ["queues.vip.callbacks.enabled"]


def test_a_route_deadline_override_for_a_number_is_refused(tmp_path: Path) -> None:
    """The route hook answers within the site's deadline for every call."""
    text = "[dialed.88005550199.night_routing]\ndeadline_ms = 400\n"
    (problem,) = problems(tmp_path, text)
    assert problem.key == "dialed.88005550199.night_routing.deadline_ms"
    assert "site-wide" in problem.message


def test_the_old_quality_talk_over_key_may_only_repeat_the_threshold_used(
    tmp_path: Path,
) -> None:
    """standards.quality.talk_over_s (in the sample config, never read) loads when it says
    what dead_air.talk_over_s says; another value is refused, pointing at that key."""
    config = load_config(write(tmp_path, "[standards.quality]\ntalk_over_s = 3\n"), env={})
    assert config.standards_for().dead_air.talk_over_s == 3
    (problem,) = problems(tmp_path, "[standards.quality]\ntalk_over_s = 5\n")
    assert problem.key == "standards.quality.talk_over_s"
    assert "dead_air.talk_over_s" in problem.accepted


def test_the_old_quality_key_does_not_block_a_queues_own_talk_over_threshold(
    tmp_path: Path,
) -> None:
    """The site repeats the threshold in the old key; a queue sets its own: accepted."""
    text = "[standards.quality]\ntalk_over_s = 3\n[queues.vip.dead_air]\ntalk_over_s = 5\n"
    config = load_config(write(tmp_path, text), env={})
    assert config.standards_for("vip", None).dead_air.talk_over_s == 5


def test_feature_code_leading_to_no_script_is_rejected(tmp_path: Path) -> None:
    """A feature code must name a script or "farewell"."""
    found = problems(tmp_path, '[standards.feature_codes]\npbxagent_rude = "rude"\n')
    problem = by_key(found, "standards.feature_codes.pbxagent_rude")
    assert "abuse" in problem.accepted
    assert "farewell" in problem.accepted


def test_bad_host_port_is_rejected(tmp_path: Path) -> None:
    """Bind addresses are host:port with a valid port."""
    text = '[asterisk]\nsecret = "s"\nfastagi_bind = "127.0.0.1:70000"\n'
    problem = by_key(problems(tmp_path, text), "asterisk.fastagi_bind")
    assert problem.value == "127.0.0.1:70000"
    assert "host:port" in problem.accepted


def test_unsupported_store_scheme_is_rejected(tmp_path: Path) -> None:
    """Only the async SQLite and PostgreSQL drivers are accepted."""
    found = problems(tmp_path, '[store]\nurl = "mysql://db/pbx"\n')
    assert "postgresql+asyncpg://" in by_key(found, "store.url").accepted


def test_store_url_password_is_masked(tmp_path: Path) -> None:
    """A database password never appears in a problem."""
    found = problems(tmp_path, '[store]\nurl = "postgres://agent:hunter2@db/pbx"\n')
    assert by_key(found, "store.url").value == "postgres://agent:***@db/pbx"


def test_a_store_url_password_holding_an_at_sign_is_masked_whole() -> None:
    """An unencoded '@' in the password does not leave its tail visible."""
    from pbx_agent.config.validation import mask_url  # noqa: PLC0415

    masked = mask_url("postgresql+asyncpg://pbx:Top@Secret@127.0.0.1/pbx")
    assert masked == "postgresql+asyncpg://pbx:***@127.0.0.1/pbx"
    assert mask_url("postgresql://pbx:se/cr?et#1@db/pbx") == "postgresql://pbx:***@db/pbx"


def test_a_store_url_password_after_an_at_sign_in_the_user_or_in_the_query_is_masked() -> None:
    """A user name holding '@', or libpq's ?password=, does not leave the password visible."""
    from pbx_agent.config.validation import mask_url  # noqa: PLC0415

    assert mask_url("postgresql://ops@site:hunter2@db/pbx") == "postgresql://ops@site:***@db/pbx"
    assert (
        mask_url("postgresql://db/pbx?user=pbx&Password=hunter2&sslmode=require")
        == "postgresql://db/pbx?user=pbx&Password=***&sslmode=require"
    )
    assert mask_url("postgresql://pbx@db:5432/pbx") == "postgresql://pbx@db:5432/pbx"
    assert mask_url("sip:1001@pbx") == "sip:1001@pbx"


def test_a_mistyped_store_url_does_not_show_its_password(tmp_path: Path) -> None:
    """check-config names a URL it cannot take without printing the password in it."""
    for url in ("postgresql:/pbx:hunter2@db/pbx", "postgresql+asyncpg//pbx:hunter2@db/pbx"):
        problem = by_key(problems(tmp_path, f'[store]\nurl = "{url}"\n'), "store.url")
        assert "hunter2" not in problem.value
        assert problem.value.endswith(":***@db/pbx")


def test_asterisk_section_without_secret_is_rejected(tmp_path: Path) -> None:
    """Driving Asterisk needs the AMI secret."""
    problem = by_key(problems(tmp_path, '[asterisk]\nami_host = "pbx"\n'), "asterisk.secret")
    assert "PBX_AGENT_ASTERISK__SECRET" in problem.accepted


def test_asterisk_section_selects_the_asterisk_pbx(tmp_path: Path) -> None:
    """With only [asterisk] configured, pbx.kind defaults to asterisk."""
    config = load_config(write(tmp_path, '[asterisk]\nsecret = "s"\n'), env={})
    assert config.pbx.kind == "asterisk"
    assert config.asterisk is not None
    assert config.asterisk.ami_port == 5038


def test_both_pbx_sections_without_a_kind_are_ambiguous(tmp_path: Path) -> None:
    """[asterisk] and [freeswitch] together need pbx.kind."""
    text = '[asterisk]\nsecret = "s"\n[freeswitch]\npassword = "p"\n'
    assert by_key(problems(tmp_path, text), "pbx.kind").value == "(not set)"


def test_unknown_secret_key_value_is_never_shown(tmp_path: Path) -> None:
    """Even under a misspelt key, a secret's value is masked."""
    found = problems(tmp_path, '[asterisk]\nsecrett = "hunter2"\n')
    assert by_key(found, "asterisk.secrett").value == "***"
    assert all("hunter2" not in str(p) for p in found)


@pytest.mark.parametrize(("section", "key"), [("asterisk", "secret"), ("freeswitch", "password")])
def test_a_secret_with_a_line_break_is_refused_without_showing_it(
    tmp_path: Path, section: str, key: str
) -> None:
    """A secret read from a file with its trailing newline would be refused by the wire
    codec (and printed in its error) at every reconnect: refused here, never shown."""
    name = f"PBX_AGENT_{section.upper()}__{key.upper()}"
    found = problems(tmp_path, f'[{section}]\n{key} = "ok"\n', env={name: "TopSecret42\n"})
    problem = by_key(found, name)  # the environment set it: named as it was given
    assert "line break" in problem.message
    assert all("TopSecret42" not in str(p) for p in found)


def test_env_override_wins_over_the_file(tmp_path: Path) -> None:
    """PBX_AGENT_<SECTION>__<KEY> overrides the file."""
    path = write(
        tmp_path, '[asterisk]\nsecret = "from-file"\n[standards.hold]\nreminder_interval_s = 40\n'
    )
    env = {
        "PBX_AGENT_ASTERISK__SECRET": "from-env",
        "PBX_AGENT_STANDARDS__HOLD__REMINDER_INTERVAL_S": "45",
    }
    config = load_config(path, env=env)
    assert config.asterisk is not None
    assert config.asterisk.secret.get_secret_value() == "from-env"
    assert config.standards_for().hold.reminder_interval_s == 45


def test_env_override_of_a_list_is_json(tmp_path: Path) -> None:
    """Lists come from the environment as JSON."""
    config = load_config(None, env={"PBX_AGENT_AGENTS__ENDPOINT_PATTERNS": '["SIP/op-*"]'})
    assert config.agents.endpoint_patterns == ["SIP/op-*"]


def test_bad_env_value_is_keyed_by_the_variable_name() -> None:
    """A bad value from the environment names the variable, not the config key."""
    with pytest.raises(ConfigError) as caught:
        load_config(
            None,
            env={"PBX_AGENT_ASTERISK__AMI_PORT": "not-a-port", "PBX_AGENT_ASTERISK__SECRET": "s"},
        )
    problem = by_key(caught.value.problems, "PBX_AGENT_ASTERISK__AMI_PORT")
    assert (problem.value, problem.accepted) == ("not-a-port", "an integer")
    assert "asterisk.ami_port" in problem.message


def test_env_value_that_is_not_json_is_keyed_by_the_variable_name() -> None:
    """A list override that is not JSON is reported against its variable."""
    with pytest.raises(ConfigError) as caught:
        load_config(None, env={"PBX_AGENT_AGENTS__ENDPOINT_PATTERNS": "[SIP/op-*"})
    assert by_key(caught.value.problems, "PBX_AGENT_AGENTS__ENDPOINT_PATTERNS")


def test_unrelated_environment_is_ignored() -> None:
    """Variables without the prefix, or flat ones naming no section, do not matter."""
    env = {"ASTERISK__SECRET": "x", "PATH": "/bin", "PBX_AGENT_TEST_AMI": "h:1:u:s"}
    assert isinstance(load_config(None, env=env), Config)


def test_env_override_of_an_unknown_section_is_reported() -> None:
    """A misspelt section in a nested variable is named, with a suggestion."""
    with pytest.raises(ConfigError) as caught:
        load_config(None, env={"PBX_AGENT_ASTERIX__SECRET": "hunter2"})
    problem = by_key(caught.value.problems, "PBX_AGENT_ASTERIX__SECRET")
    assert problem.message == "unknown section 'asterix'; did you mean 'asterisk'?"
    assert problem.value == "***"


def test_env_override_of_an_unknown_key_is_reported() -> None:
    """A misspelt key in a known section is named by the variable."""
    with pytest.raises(ConfigError) as caught:
        load_config(None, env={"PBX_AGENT_METRICS__BINDD": "127.0.0.1:1"})
    problem = by_key(caught.value.problems, "PBX_AGENT_METRICS__BINDD")
    assert "did you mean 'bind'?" in problem.message


def test_queue_override_applies_to_its_queue_only(tmp_path: Path) -> None:
    """A queue's override changes that queue's standards, not the site's."""
    config = load_config(write(tmp_path, "[queues.vip.hold]\nreminder_interval_s = 30\n"), env={})
    assert config.standards_for("vip").hold.reminder_interval_s == 30
    assert config.standards_for("support").hold.reminder_interval_s == 60


def test_bad_queue_override_is_keyed_by_the_queue(tmp_path: Path) -> None:
    """A problem in a queue override names the queue."""
    text = """
[queues.support.silent_caller]
steps = [{after_s = 2.5, prompt = "silent.prompt"}, {after_s = 6, prompt = "silent.closing"}]
"""
    problem = by_key(problems(tmp_path, text), "queues.support.silent_caller.steps[1].after_s")
    assert problem.value == "6"


def test_bad_site_value_is_not_repeated_for_each_queue(tmp_path: Path) -> None:
    """A site-level problem is reported once, at the site key."""
    text = "[standards.callbacks]\nring_time_s = 20\n[queues.a.hold]\nenabled = true\n"
    assert [p.key for p in problems(tmp_path, text)] == ["standards.callbacks.ring_time_s"]


def test_dialed_and_queue_overrides_that_clash_are_reported(tmp_path: Path) -> None:
    """Valid alone, a number's range and a queue's steps may clash on one call."""
    text = """
[dialed."88005550100".silent_caller]
step_range_s = [2, 2.5]
[queues.support.silent_caller]
steps = [{after_s = 3, prompt = "silent.prompt"}, {after_s = 3, prompt = "silent.closing"}]
"""
    problem = by_key(problems(tmp_path, text), "queues.support.silent_caller.steps[0].after_s")
    assert "dialed.88005550100" in problem.message


def test_agent_tier_without_a_hold_limit_is_rejected(tmp_path: Path) -> None:
    """An agent's tier must have a hold limit."""
    found = problems(tmp_path, '[agents.tiers]\n"1001" = "lead"\n')
    assert "specialist" in by_key(found, "agents.tiers.1001").accepted


def test_an_unknown_tier_is_said_once_unless_a_queue_has_tiers_of_its_own(
    tmp_path: Path,
) -> None:
    """Queues with the site's tiers do not repeat the site's problem; a queue with its own
    tier list, which lacks the agent's tier too, is named with its own list."""
    text = (
        '[agents]\ndefault_tier = "wizard"\n'
        "[queues.vip.hold]\nreminder_interval_s = 30\n"
        "[queues.sales.hold]\nreminder_interval_s = 40\n"
        "[queues.care.hold.tier_limits_s]\nlead = 200\n"
    )
    found = problems(tmp_path, text)
    assert [(p.key, p.accepted.split(":")[0]) for p in found] == [
        ("agents.default_tier", "a tier of standards.hold.tier_limits_s"),
        ("agents.default_tier", "a tier of queues.care.hold.tier_limits_s"),
    ]


def test_prompt_file_for_an_unknown_phrase_is_rejected(tmp_path: Path) -> None:
    """A recording can only replace a phrase that exists."""
    found = problems(tmp_path, '[prompts.files]\n"hold.welcome" = "custom/welcome"\n')
    assert by_key(found, 'prompts.files."hold.welcome"').value == "hold.welcome"


def test_several_problems_are_reported_at_once(tmp_path: Path) -> None:
    """Every problem in the file is reported in one go, across sections and layers."""
    text = """
[site]
timezone = "Nowhere/Town"
[asterisk]
secret = "s"
ami_port = 0
[standards.hold]
reminder_intervl_s = 30
[standards.callbacks]
ring_time_s = 30
[standards.lingering]
ask_prompt = "linger.question"
[queues.support.hold]
reminder_interval_s = "x"
"""
    keys = {p.key for p in problems(tmp_path, text, env={"PBX_AGENT_METRICS__BIND": "nowhere"})}
    assert keys == {
        "site.timezone",
        "asterisk.ami_port",
        "standards.hold.reminder_intervl_s",
        "standards.callbacks.ring_time_s",
        "standards.lingering.ask_prompt",
        "queues.support.hold.reminder_interval_s",
        "PBX_AGENT_METRICS__BIND",
    }


def test_a_bad_value_does_not_hide_the_problems_checked_across_sections(tmp_path: Path) -> None:
    """A typo in one key, a missing AMI secret and an agent with an unknown tier: all three
    are listed in one run (the checks across sections used to wait for the typo's fix)."""
    text = (
        '[asterisk]\nami_port = "not a port"\n'
        '[agents.tiers]\nivanov = "intern"\n'
        "[standards.hold]\nreminder_intervl_s = 30\n"
    )
    found = problems(tmp_path, text)
    keys = [p.key for p in found]
    assert "asterisk.ami_port" in keys
    assert "standards.hold.reminder_intervl_s" in keys
    assert by_key(found, "asterisk.secret").message == "required when pbx.kind is 'asterisk'"
    assert by_key(found, "agents.tiers.ivanov").message == "unknown tier"
    assert len(keys) == len(set(keys)), keys


def test_a_bad_secret_is_not_also_reported_missing(tmp_path: Path) -> None:
    found = problems(tmp_path, "[asterisk]\nsecret = 12345\n")
    assert [p.key for p in found] == ["asterisk.secret"]
    assert "12345" not in found[0].value


def test_a_queue_wording_a_site_phrase_differently_is_refused(tmp_path: Path) -> None:
    """The switch plays one file per phrase key, so a queue's own text for the site's key
    would never be heard: the file is refused (by run and reload too, not only check-config)."""
    text = '[queues.vip.phrases]\n"hold.announce" = "Минуточку, пожалуйста."\n'
    problem = by_key(problems(tmp_path, text), 'queues.vip.phrases."hold.announce"')
    assert problem.value == "Минуточку, пожалуйста."
    assert "one file per key" in problem.message


FREESWITCH = '[pbx]\nkind = "freeswitch"\n[freeswitch]\npassword = "x"\n'


@pytest.mark.parametrize(
    ("line", "key", "accepted"),
    [
        ('unicast_ports = "9300-9100"', "freeswitch.unicast_ports", "'low-high'"),
        ('unicast_ports = "9100"', "freeswitch.unicast_ports", "'low-high'"),
        ('unicast_address = "::1"', "freeswitch.unicast_address", "an IPv4 address"),
        ('unicast_switch_ip = "fs.example"', "freeswitch.unicast_switch_ip", "an IPv4 address"),
        ('amd_audio = "audio"', "freeswitch.amd_audio", "unicast"),
    ],
)
def test_a_bad_unicast_setting_is_named_with_what_is_accepted(
    tmp_path: Path, line: str, key: str, accepted: str
) -> None:
    problem = by_key(problems(tmp_path, FREESWITCH + line + "\n"), key)
    assert accepted in problem.accepted


def test_a_stream_from_loopback_to_another_host_is_refused(tmp_path: Path) -> None:
    """unicast_address on another host needs the switch to send from an address of its own."""
    problem = by_key(
        problems(tmp_path, FREESWITCH + 'unicast_address = "10.0.0.9"\n'),
        "freeswitch.unicast_switch_ip",
    )
    assert problem.value == "127.0.0.1"
    assert "nothing arrives" in problem.message
    config = load_config(
        write(
            tmp_path, FREESWITCH + 'unicast_address = "10.0.0.9"\nunicast_switch_ip = "0.0.0.0"\n'
        ),
        env={},
    )
    assert config.freeswitch is not None
    assert config.freeswitch.unicast_switch_ip == "0.0.0.0"


def test_a_hook_connection_cap_out_of_range_is_refused(tmp_path: Path) -> None:
    """hooks.max_sessions = 0 (or a word) would refuse every hook call: named, with the range."""
    for raw in ("0", '"many"'):
        problem = by_key(
            problems(tmp_path, f"[hooks]\nmax_sessions = {raw}\n"), "hooks.max_sessions"
        )
        assert problem.accepted
