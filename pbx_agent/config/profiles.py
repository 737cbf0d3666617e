"""The service standards as data: the ``ru`` and ``zh`` profiles.

Each profile is a plain dict with exactly the shape of ``pbx_agent.config.standards.Standards``
and carries every number and phrase of the rules (R1-R9). Sources:

- ``ru``: the Russian operator scripts (unconstructive dialogue, silent caller, lingering,
  night repeat callers, answering machines) and the Russian hold rules (hold, not mute; the
  promised minute; 2 / 3 minute tier limits; the 95 % target).
- ``zh``: the Chinese service standard (§1 waiting phrases, §4 one-way audio, §7 harassment,
  §9 off-topic, §10 abuse, §17/§18 silence and hold reminders, §19 silent caller, §23 chatting,
  the 3 s talk-over rule, callbacks after abnormal drops: more than 30 s of ringing, at most
  3 tries in 2 days, promises kept within 72 h).

Phrases are the seeds' own words, verbatim where the seed gives them (the Chinese ones in
simplified characters, the "**" fill-ins of the seed removed); ``{company}`` stands for
``site.company_name`` and is filled in when standards are resolved. Phrases the seeds do not
spell out but the daemon needs (callback offers, agent-only alerts, the zh abuse warning,
the zh night notice) are written in the seed's register and marked "daemon's own" below.

Where a seed gives a range (2-3 s), the default sits inside it and the range itself is data
(``*_range_s``): config validation accepts the range by default, and a site that really
wants other timings widens the range explicitly.

Prompt keys are stable: they become sound file names (``<sounds_dir>/<profile>/<key>.wav``).
"""

# the phrases are Russian and Chinese text, not look-alike Latin

from __future__ import annotations

from typing import Any, Final

from pbx_agent.amd.params import DetectorTuning

# Q.850 causes that mean the network or a system failed, not that a party hung up
# (callbacks, R7): 27 destination out of order, 34 no circuit/channel available,
# 38 network out of order, 41 temporary failure, 42 switching equipment congestion,
# 44 requested channel not available (Asterisk's cause for a leg whose media timed out),
# 47 resource unavailable, 102 recovery on timer expiry.
DEFAULT_ABNORMAL_CAUSES: Final[tuple[int, ...]] = (27, 34, 38, 41, 42, 44, 47, 102)

# Asterisk's own AMD() defaults (amd.conf), used when the engine is "asterisk" and as the
# starting point of the daemon's detector.
_AMD: Final[dict[str, Any]] = {
    "enabled": True,
    "engine": "daemon",
    "initial_silence_ms": 2500,
    "greeting_ms": 1500,
    "after_greeting_silence_ms": 800,
    "total_analysis_time_ms": 5000,
    "min_word_length_ms": 100,
    "between_words_silence_ms": 50,
    "maximum_number_of_words": 2,
    "silence_threshold": 256,
    "maximum_word_length_ms": 5000,
    "notsure_action": "human",
    "deadline_ms": 6000,
    # The daemon's detector: the defaults chosen on the generated corpus (docs/amd.md).
    "detector": DetectorTuning().model_dump(),
}

_CALLBACKS: Final[dict[str, Any]] = {
    "enabled": True,
    "max_attempts": 3,
    "window_h": 48,
    # First try "at once" (30 s lets the customer's line clear), then 4 h, then 24 h.
    "attempt_offsets_s": [30, 4 * 3600, 24 * 3600],
    "ring_time_s": 40,
    "quiet_hours": {"start": "21:00", "end": "09:00"},
    "max_concurrent": 2,
    "abnormal_causes": list(DEFAULT_ABNORMAL_CAUSES),
    "media_timeout_abnormal": True,
    "agent_device_drop": True,
    "one_way_audio": True,
    "cancel_on_inbound": True,
    "promised_default_deadline_h": 72,
    "target": None,
    "greeting_prompt": "callback.greeting",
}

_QUALITY: Final[dict[str, Any]] = {
    "hold_share_target": 0.05,
    "dead_air_s": 3,
}

_FLAGS: Final[dict[str, Any]] = {
    "enabled": True,
    "flagged_queue": "flagged",
    "default_expiry_days": None,
}

RU: Final[dict[str, Any]] = {
    "hold": {
        "enabled": True,
        # The hold phrase promises "не более минуты": the first reminder comes when it runs out.
        "reminder_first_after_s": 60,
        "reminder_interval_s": 60,
        # The seed gives no number for the longer thanks: a wait past the promised minute is,
        # to the caller, longer than promised, so that is when "длительное ожидание" is due.
        "long_wait_threshold_s": 60,
        "tier_limits_s": {"specialist": 120, "senior": 180},
        "callback_offer": {
            "enabled": True,
            "digit": "1",
            # 001: past the promised minute, the caller who will not wait is offered an
            # alternative: the offer comes with the first reminder, and again at the limit.
            "with_first_reminder": True,
            "prompt": "hold.callback_offer",
            "registered_prompt": "hold.callback_registered",
        },
        "announce_prompt": "hold.announce",
        "reminder_prompt": "hold.reminder",
        "resume_prompt": "hold.resume",
        "resume_long_prompt": "hold.resume_long",
        "agent_limit_prompt": "hold.agent_limit",
    },
    "dead_air": {
        "enabled": True,
        "log_after_s": 10,
        "agent_reminder_after_s": 10,
        "talk_over_s": 3,
        "agent_reminder_prompt": "dead_air.agent_reminder",
    },
    "silent_caller": {
        "enabled": True,
        "steps": [
            {"after_s": 2.5, "prompt": "silent.prompt"},
            {"after_s": 2.5, "prompt": "silent.closing"},
        ],
        "step_range_s": [2, 3],
        "hangup_after_closing_s": 0,
        "greeting_max_s": 8,
        "min_speech_ms": 250,
        "one_way_audio_callback": False,
        "one_way_prompt": "silent.one_way",
        "pre_queue": False,
    },
    "lingering": {
        "enabled": True,
        "ask_after_s": 2.5,
        "drop_after_s": 2.5,
        "range_s": [2, 3],
        "answer_wait_s": 3,
        "ask_prompt": "linger.ask",
        "closing_prompt": "linger.closing",
    },
    "scripts": {
        "abuse": {
            "steps": ["abuse.warning", "abuse.warning", "abuse.farewell"],
            "flag_number": True,
            "record": True,
        },
        "offtopic": {
            "steps": ["offtopic.question", "offtopic.farewell"],
            "flag_number": False,
            "record": False,
        },
        "guessing": {
            "steps": ["guessing.question", "guessing.number", "guessing.farewell"],
            "flag_number": False,
            "record": False,
        },
        "circling": {
            "steps": ["circling.options", "circling.warning", "circling.farewell"],
            "flag_number": False,
            "record": False,
        },
        "outage": {
            "steps": ["outage.info", "outage.warning", "outage.farewell"],
            "flag_number": False,
            "record": False,
        },
        "prank": {
            "steps": ["prank.farewell"],
            "flag_number": True,
            "record": True,
        },
    },
    "feature_codes": {
        "pbxagent_abuse": "abuse",
        "pbxagent_offtopic": "offtopic",
        "pbxagent_guessing": "guessing",
        "pbxagent_circling": "circling",
        "pbxagent_outage": "outage",
        "pbxagent_prank": "prank",
        "pbxagent_farewell": "farewell",
    },
    "night_routing": {
        "enabled": True,
        "window_start": "22:00",
        "window_end": "08:00",
        "threshold": 2,
        "trailing_hours": 24,
        "count_mode": "per_topic_when_known",
        "deadline_ms": 50,
        "ivr_target": None,
        "notice_prompt": "night.notice",
    },
    "flags": _FLAGS,
    "amd": _AMD,
    "callbacks": _CALLBACKS,
    "quality": _QUALITY,
    "phrases": {
        # R1 hold
        "hold.announce": (
            "Я уточню информацию для Вас. Это займет не более минуты. "
            "Оставайтесь, пожалуйста, на линии."
        ),
        "hold.reminder": (
            "Поиск информации займет еще некоторое время. Оставайтесь, пожалуйста, на линии."
        ),
        "hold.resume": "Спасибо за ожидание.",
        "hold.resume_long": "Спасибо за длительное ожидание.",
        # daemon's own: the alternative to waiting that the switch can offer
        "hold.callback_offer": "Если Вы не готовы ждать, нажмите 1, и мы Вам перезвоним.",
        "hold.callback_registered": "Спасибо, мы Вам обязательно перезвоним. Всего доброго.",
        # daemon's own, heard by the agent only
        "hold.agent_limit": "Время удержания истекло. Вернитесь к клиенту.",
        "dead_air.agent_reminder": (
            "Клиент слышит тишину. Поставьте вызов на удержание или продолжите разговор."
        ),
        # R2 silent caller
        "silent.prompt": "Говорите, пожалуйста, я Вас слушаю.",
        "silent.closing": "Перезвоните, пожалуйста, Вас не слышно.",
        # daemon's own (the ru profile does not call back on one-way audio by default)
        "silent.one_way": (
            "Вас не слышно. Мы Вам перезвоним, пожалуйста, ответьте на звонок. Всего доброго."
        ),
        # R3 lingering
        "linger.ask": "Я Вам могу еще чем-нибудь помочь?",
        "linger.closing": (
            "Если у вас больше нет вопросов, вы можете прервать соединение. "
            "Спасибо за звонок. Всего доброго."
        ),
        # R4 scripts
        "abuse.warning": (
            "К сожалению, в таком тоне разговор продолжаться не может, "
            "я буду вынужден(а) прекратить разговор."
        ),
        "abuse.farewell": (
            "К сожалению, разговор не может продолжаться в таком тоне, "
            "я вынужден(а) прекратить разговор. Всего доброго. До свидания."
        ),
        "offtopic.question": (
            "Я не могу предоставить ответ на ваш вопрос, так как он не относится к работе "
            "компании {company}. Скажите, пожалуйста, у Вас есть вопросы по условиям обслуживания?"
        ),
        "offtopic.farewell": (
            "К сожалению, поскольку у Вас нет вопросов, касающихся компании {company}, "
            "я вынужден(а) прекратить разговор. Спасибо за звонок. Всего доброго."
        ),
        "guessing.question": (
            "Скажите, пожалуйста, у Вас есть вопросы, касающиеся работы компании {company}?"
        ),
        "guessing.number": (
            "Скажите, пожалуйста, какой у вас вопрос по данному номеру, касающиеся сервисов, "
            "предоставляемых компанией {company}?"
        ),
        "guessing.farewell": (
            "Поскольку у Вас нет вопросов, я вынужден(а) прекратить разговор. Всего доброго."
        ),
        "circling.options": (
            "В настоящее время мы с Вами рассмотрели все возможные варианты решения данного "
            "вопроса. Вас интересует информация по каким-либо иным вопросам?"
        ),
        "circling.warning": (
            "Я понимаю Ваше желание решить данный вопрос в ходе текущего разговора, тем не менее, "
            "это невозможно. Для решения вопроса воспользуйтесь, пожалуйста, способами, которые "
            "мы с Вами обсудили. В настоящий момент, если у Вас нет вопросов по другим темам, "
            "я вынуждена буду прекратить наш разговор."
        ),
        "circling.farewell": (
            "К сожалению, поскольку у Вас нет иных вопросов, кроме тех, которые мы уже подробно "
            "рассмотрели, я вынуждена прекратить разговор. Всего доброго. До свидания."
        ),
        "outage.info": (
            "Мы понимаем Ваше желание разрешить данную ситуацию. В настоящее время технические "
            "специалисты делают все возможное для решения вопроса в самые сжатые сроки. "
            "Вас интересует информация по каким либо иным вопросам?"
        ),
        "outage.warning": (
            "Приношу извинения за причиненные неудобства и надеюсь на Ваше понимание. "
            "Если у Вас нет вопросов по другим темам, я буду вынужден(а) прекратить разговор."
        ),
        "outage.farewell": (
            "Поскольку у Вас нет иных вопросов, кроме тех, которые были нами рассмотрены, "
            "я вынуждена прекратить разговор. Всего доброго."
        ),
        "prank.farewell": (
            "Данный вопрос не относится к работе компании {company}, "
            "я вынуждена прервать разговор. Всего доброго."
        ),
        # R5 night repeat callers (no legal articles, no "хулиганство": validated)
        "night.notice": (
            "При многократном обращении в КЦ лиц, действия которых можно расценить как "
            "некорректные, неконструктивные или оскорбительные, компания {company} оставляет за "
            "собой право предоставлять обслуживание в автоматическом режиме КЦ."
        ),
        # R7 daemon's own: what an answered callback hears before the queue
        "callback.greeting": (
            "Здравствуйте! Вам перезванивает контактный центр {company}: наш разговор "
            "прервался. Соединяю Вас со специалистом."
        ),
    },
}

ZH: Final[dict[str, Any]] = {
    "hold": {
        "enabled": True,
        # §18: every wait over 10 s needs an interaction with the customer.
        "reminder_first_after_s": 10,
        "reminder_interval_s": 10,
        # §1: after about 20 s of waiting the thanks comes with an apology.
        "long_wait_threshold_s": 20,
        "tier_limits_s": {"specialist": 120, "senior": 180},
        "callback_offer": {
            "enabled": True,
            "digit": "1",
            # §1: "如等待时间过长，建议稍后给客户进行回复": offered once the wait is too long
            # (the agent's tier limit), not with every 10 s reminder.
            "with_first_reminder": False,
            "prompt": "hold.callback_offer",
            "registered_prompt": "hold.callback_registered",
        },
        "announce_prompt": "hold.announce",
        "reminder_prompt": "hold.reminder",
        "resume_prompt": "hold.resume",
        "resume_long_prompt": "hold.resume_long",
        "agent_limit_prompt": "hold.agent_limit",
    },
    "dead_air": {
        "enabled": True,
        # §17: more than 3 s of unannounced silence is a fault.
        "log_after_s": 3,
        "agent_reminder_after_s": 10,
        "talk_over_s": 3,
        "agent_reminder_prompt": "dead_air.agent_reminder",
    },
    "silent_caller": {
        "enabled": True,
        "steps": [
            {"after_s": 4, "prompt": "silent.prompt1"},
            {"after_s": 4, "prompt": "silent.prompt2"},
            {"after_s": 4, "prompt": "silent.closing"},
        ],
        "step_range_s": [3, 5],
        # §19: "再稍停3秒，挂机".
        "hangup_after_closing_s": 3,
        "greeting_max_s": 8,
        "min_speech_ms": 250,
        # §4: one-way audio ends with a promise to call back, and the customer is called back.
        "one_way_audio_callback": True,
        "one_way_prompt": "silent.one_way",
        "pre_queue": False,
    },
    "lingering": {
        "enabled": True,
        "ask_after_s": 2.5,
        "drop_after_s": 2.5,
        "range_s": [2, 3],
        "answer_wait_s": 3,
        "ask_prompt": "linger.ask",
        "closing_prompt": "linger.closing",
    },
    "scripts": {
        # §10: personal attack → 2 reminders, then the call ends.
        "abuse": {
            "steps": ["abuse.warning", "abuse.warning", "abuse.farewell"],
            "flag_number": True,
            "record": True,
        },
        # §9: after 2 reminders, the set closing sentence and hang up.
        "offtopic": {
            "steps": ["offtopic.reminder", "offtopic.reminder", "offtopic.closing"],
            "flag_number": False,
            "record": False,
        },
        # §7: one guidance; if it does not help, handled as a nuisance call.
        "harassment": {
            "steps": ["harassment.guide", "harassment.farewell"],
            "flag_number": True,
            "record": True,
        },
        # §23: chatting / pestering after the business is done.
        "chatting": {
            "steps": ["chatting.prompt", "chatting.farewell"],
            "flag_number": False,
            "record": False,
        },
    },
    "feature_codes": {
        "pbxagent_abuse": "abuse",
        "pbxagent_offtopic": "offtopic",
        "pbxagent_harassment": "harassment",
        "pbxagent_chatting": "chatting",
        "pbxagent_farewell": "farewell",
    },
    # The Chinese standard has no night rule; the numbers are there for a site that enables it.
    "night_routing": {
        "enabled": False,
        "window_start": "22:00",
        "window_end": "08:00",
        "threshold": 2,
        "trailing_hours": 24,
        "count_mode": "per_topic_when_known",
        "deadline_ms": 50,
        "ivr_target": None,
        "notice_prompt": "night.notice",
    },
    "flags": _FLAGS,
    "amd": _AMD,
    "callbacks": _CALLBACKS,
    "quality": _QUALITY,
    "phrases": {
        # R1 hold (§1, §18)
        "hold.announce": "现在为您查询，请稍等。",
        "hold.reminder": "感谢您的耐心等待，正在查询，请稍等。",
        "hold.resume": "感谢您的耐心等候。",
        # daemon's own: §1 asks for an apology after about 20 s but gives no words
        "hold.resume_long": "很抱歉让您久等了，感谢您的耐心等候。",
        # daemon's own: §1 "如等待时间过长，建议稍后给客户进行回复"
        "hold.callback_offer": "如您不便继续等待，请按1，我们将稍后给您回电。",
        "hold.callback_registered": "已为您登记回电，我们会尽快与您联系，再见！",
        # daemon's own, heard by the agent only
        "hold.agent_limit": "保持时间已超限，请尽快回到客户通话。",
        "dead_air.agent_reminder": "客户正在听到静音，请与客户交流或将通话保持。",
        # R2 silent caller (§19) and one-way audio (§4)
        "silent.prompt1": "您好！请问有什么可以帮助您？",
        "silent.prompt2": "您好，听不到您的声音，请问有什么可以帮助您？",
        "silent.closing": "对不起，听不到您的声音，不打扰了，再见！",
        "silent.one_way": "对不起，听不到您讲话，我们会马上跟您联系，请您稍后接听，再见！",
        # R3 lingering (the closing questions of the inbound call)
        "linger.ask": "您看还有其他问题需要咨询吗？",
        "linger.closing": "感谢您的来电，祝您愉快，再见！",
        # R4 scripts
        # daemon's own: §10 says "提示2次后终止通话" without the words
        "abuse.warning": "对不起，请您文明用语，否则我们将结束本次通话。",
        "abuse.farewell": "由于您多次使用不文明语言，我们将结束本次服务，再见！",
        "offtopic.reminder": (
            "您咨询的内容已超出了我们工作范围，非常抱歉没能帮助到您，"
            "为了不影响您的使用，建议您拨打相关部门号码联系。"
        ),
        "offtopic.closing": (
            "由于您多次咨询非移动业务，这里暂无法及时帮助到您，"
            "我们将结束本次服务，感谢您的支持，再见。"
        ),
        "harassment.guide": (
            "先生/女士，这里是{company}4G服务专线，专门向老客户帮您推荐匹配套餐，节省话费的，"
            "或终端销售等，您看这边需要我的服务讲解吗？"
        ),
        "harassment.farewell": "如果没有，我这边需要挂机了，祝您生活愉快，再见！",
        "chatting.prompt": (
            "对不起，请问您还有其它的业务需要帮助吗？如没有，请您挂机，把线路让给其它的客户，好吗？"
        ),
        "chatting.farewell": "感谢您的来电，祝您愉快，再见！",
        # R5 daemon's own (the Chinese standard has no night rule)
        "night.notice": "您多次来电咨询相同问题，现为您转接自助语音服务。",
        # R7 (§3) and the daemon's callback greeting
        "callback.promised": (
            "先生/女士，很抱歉，您的问题需要进一步确认，我们将在72小时内与您联系。"
        ),
        "callback.greeting": (
            "您好，这里是{company}客服，刚才的通话意外中断，现在为您回电，请稍候。"
        ),
    },
}

PROFILES: Final[dict[str, dict[str, Any]]] = {"ru": RU, "zh": ZH}

# Per-profile defaults for the site section when the file leaves them out.
PROFILE_SITE_DEFAULTS: Final[dict[str, dict[str, str]]] = {
    "ru": {"timezone": "Europe/Moscow", "default_region": "RU"},
    "zh": {"timezone": "Asia/Shanghai", "default_region": "CN"},
}
