"""The ru and zh profiles, and how Config resolves standards for a call."""

# Russian and Chinese phrases, not look-alike Latin

from __future__ import annotations

import re
from pathlib import Path

import pydantic
import pytest

from pbx_agent.config import Config, Standards, load_config
from pbx_agent.config.profiles import PROFILES
from pbx_agent.config.settings import resolve_standards

# Every phrase STANDARDS.md gives, per profile, as written there.
STANDARDS_PHRASES = {
    "ru": [
        "Я уточню информацию для Вас. Это займет не более минуты. Оставайтесь, пожалуйста, на линии.",
        "поиск информации займет еще некоторое время",
        "Спасибо за ожидание",
        "Спасибо за длительное ожидание",
        "Говорите, пожалуйста, я Вас слушаю.",
        "Перезвоните, пожалуйста, Вас не слышно.",
        "Я Вам могу еще чем-нибудь помочь?",
        (
            "Если у вас больше нет вопросов, вы можете прервать соединение. Спасибо за звонок. "
            "Всего доброго."
        ),
        (
            "К сожалению, в таком тоне разговор продолжаться не может, я буду вынужден(а) "
            "прекратить разговор."
        ),
        "…Всего доброго. До свидания.",
        (
            "При многократном обращении в КЦ лиц, действия которых можно расценить как "
            "некорректные, неконструктивные или оскорбительные, компания оставляет за собой право "
            "предоставлять обслуживание в автоматическом режиме КЦ."
        ),
    ],
    "zh": [
        "现在为您查询，请稍等。",
        "感谢您的耐心等待，正在查询，请稍等",
        "感谢您的耐心等候",
        "您好！请问有什么可以帮助您？",
        "您好，听不到您的声音，请问有什么可以帮助您？",
        "对不起，听不到您的声音，不打扰了，再见！",
        "对不起，听不到您讲话，我们会马上跟您联系，请您稍后接听，再见！",
    ],
}

STANDARDS_MD = Path(__file__).resolve().parents[3] / "shared" / "STANDARDS.md"


def normalised(text: str) -> str:
    """Case and line breaks aside (STANDARDS.md wraps lines, even inside Chinese phrases)."""
    return re.sub(r"\s+", "", text.strip("…")).casefold()


def config_for(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "pbx-agent.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, env={})


@pytest.mark.parametrize("profile", ["ru", "zh"])
def test_profile_carries_every_phrase_of_the_standards(tmp_path: Path, profile: str) -> None:
    """Each phrase STANDARDS.md gives for a profile is in that profile's phrases."""
    phrases = config_for(tmp_path, f'[site]\nprofile = "{profile}"\n').standards_for().phrases
    texts = [normalised(text) for text in phrases.values()]
    missing = [p for p in STANDARDS_PHRASES[profile] if not any(normalised(p) in t for t in texts)]
    assert missing == []


@pytest.mark.skipif(not STANDARDS_MD.exists(), reason="STANDARDS.md is not beside the repository")
def test_listed_phrases_are_quoted_from_standards_md() -> None:
    """The phrase list above is STANDARDS.md's own wording."""
    document = normalised(STANDARDS_MD.read_text(encoding="utf-8"))
    listed = [p for phrases in STANDARDS_PHRASES.values() for p in phrases]
    assert [p for p in listed if normalised(p) not in document] == []


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_profile_alone_is_valid_standards(profile: str) -> None:
    """A profile with no override validates: all prompt keys exist, all numbers in range."""
    assert isinstance(resolve_standards(profile, ""), Standards)


@pytest.mark.parametrize(
    ("profile", "numbers"),
    [
        (
            "ru",
            {
                "hold.reminder_first_after_s": 60,
                "hold.reminder_interval_s": 60,
                "dead_air.log_after_s": 10,
                "silent_caller.steps": [2.5, 2.5],
                "silent_caller.hangup_after_closing_s": 0,
                "lingering.ask_after_s": 2.5,
                "night_routing.threshold": 2,
            },
        ),
        (
            "zh",
            {
                "hold.reminder_first_after_s": 10,
                "hold.reminder_interval_s": 10,
                "hold.long_wait_threshold_s": 20,
                "dead_air.log_after_s": 3,
                "silent_caller.steps": [4, 4, 4],
                "silent_caller.hangup_after_closing_s": 3,
                "silent_caller.one_way_audio_callback": True,
            },
        ),
    ],
)
def test_profile_numbers_are_the_seeds(profile: str, numbers: dict[str, object]) -> None:
    """The profiles carry the seeds' numbers."""
    standards = resolve_standards(profile, "")
    for dotted, expected in numbers.items():
        rule, name = dotted.split(".")
        value = getattr(getattr(standards, rule), name)
        if name == "steps":
            value = [step.after_s for step in value]
        assert value == expected, dotted


def test_shared_tables_hold_the_common_numbers() -> None:
    """Tier limits 2/3 min, ring time over 30 s, 3 tries in 48 h, hold share 5 %."""
    for profile in PROFILES:
        standards = resolve_standards(profile, "")
        assert standards.hold.tier_limits_s == {"specialist": 120, "senior": 180}
        assert standards.callbacks.ring_time_s > 30
        assert (standards.callbacks.max_attempts, standards.callbacks.window_h) == (3, 48)
        assert standards.quality.hold_share_target == 0.05


def test_company_name_fills_the_phrases(tmp_path: Path) -> None:
    """site.company_name replaces {company} in the phrases."""
    config = config_for(tmp_path, '[site]\ncompany_name = "МТС"\n')
    assert "компания МТС оставляет" in config.standards_for().phrases["night.notice"]


def test_without_company_name_the_placeholder_is_dropped() -> None:
    """No company name: the placeholder and its space disappear."""
    notice = load_config(None, env={}).standards_for().phrases["night.notice"]
    assert "компания оставляет" in notice
    assert "{" not in notice


def test_resolution_order_is_profile_site_dialed_queue(tmp_path: Path) -> None:
    """Queue beats dialled number beats site beats profile, key by key."""
    config = config_for(
        tmp_path,
        """
[standards.hold]
reminder_interval_s = 50
long_wait_threshold_s = 90
[dialed."100".hold]
reminder_interval_s = 40
reminder_first_after_s = 45
[queues.vip.hold]
reminder_interval_s = 30
""",
    )
    hold = config.standards_for("vip", "100").hold
    assert hold.reminder_interval_s == 30  # queue
    assert hold.reminder_first_after_s == 45  # dialled number
    assert hold.long_wait_threshold_s == 90  # site
    assert hold.tier_limits_s["senior"] == 180  # profile
    assert config.standards_for(None, "100").hold.reminder_interval_s == 40


def test_tables_merge_key_by_key(tmp_path: Path) -> None:
    """Overriding one tier limit keeps the others."""
    config = config_for(tmp_path, "[queues.vip.hold.tier_limits_s]\nspecialist = 90\n")
    assert config.standards_for("vip").hold.tier_limits_s == {"specialist": 90, "senior": 180}


def test_queue_without_overrides_gets_the_site_standards(tmp_path: Path) -> None:
    """An unknown queue or number resolves to the site's standards."""
    config = config_for(tmp_path, "[standards.hold]\nreminder_interval_s = 50\n")
    assert config.standards_for("any", "999") is config.standards_for()


def test_resolved_standards_are_cached(tmp_path: Path) -> None:
    """Resolving the same queue twice returns the same object (no per-call validation)."""
    config = config_for(tmp_path, "[queues.vip.hold]\nreminder_interval_s = 30\n")
    assert config.standards_for("vip") is config.standards_for("vip")
    assert config.standards_for("vip") is not config.standards_for()


def test_standards_are_frozen() -> None:
    """Policies cannot change the rules they are given."""
    standards = load_config(None, env={}).standards_for()
    with pytest.raises(pydantic.ValidationError):
        standards.hold.reminder_interval_s = 1  # type: ignore[misc]


def test_night_window_is_parsed_as_times_of_day() -> None:
    """The night window 22:00-08:00 crosses midnight and is kept as times of day."""
    night = load_config(None, env={}).standards_for().night_routing
    assert (night.window_start.hour, night.window_end.hour) == (22, 8)


def test_callback_first_delay_is_the_first_offset(tmp_path: Path) -> None:
    """first_delay_s is when the first attempt is due."""
    config = config_for(tmp_path, "[standards.callbacks]\nattempt_offsets_s = [60, 7200, 86400]\n")
    assert config.standards_for().callbacks.first_delay_s == 60
