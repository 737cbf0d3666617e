"""Which ``manager.conf`` classes the daemon's AMI user needs, and what to say when one is missing.

Asterisk checks an action against the user's ``write`` classes and answers ``Response:
Error`` / ``Message: Permission denied`` when none of the action's classes is granted (any
one of them is enough). The classes below are those Asterisk 22 registers each action with
(``main/manager.c``; ``MixMonitor`` in ``apps/app_mixmonitor.c``). Events are filtered by the
``read`` classes the same way: an event of a class the user may not read is never sent, so
a missing read class shows up as the daemon not seeing calls, holds or talk, not as an error.
The read classes are those of the events the adapter translates, as the transcripts in
``tests/traces/asterisk-22`` show them (``Privilege:`` header), plus ``agent`` (the queue's
``AgentConnect``) and ``user`` (``UserEvent``, the agents' feature codes).

Originate has a second check: an ``Application`` that can reach a shell (``AGI``, ``EAGI``,
``System``, ``Exec``...) is refused to a user without ``system`` even when it has
``originate``, with ``Message: Originate Access Forbidden: Application`` (Asterisk 13 and
later; 1.6-11 said "Originate with certain 'Application' arguments requires the additional
System privilege, which you do not have."). The hold programs are Originates into ``AGI``,
so ``system`` is needed for them as well as for MixMonitor.

``dialplan/asterisk/manager.conf.sample`` grants exactly these.
"""

from __future__ import annotations

from collections.abc import Mapping

# Action -> the write classes Asterisk accepts for it (any one suffices).
WRITE_CLASSES: Mapping[str, tuple[str, ...]] = {
    "Originate": ("originate",),
    "Hangup": ("system", "call"),
    "Setvar": ("call",),
    "Getvar": ("call", "reporting"),
    "Redirect": ("call",),
    "UserEvent": ("user",),
    "MixMonitor": ("system",),
    "CoreShowChannels": ("system", "reporting"),
    "CoreSettings": ("system", "reporting"),
    "Status": ("system", "call", "reporting"),
    # Ping, Login, Logoff, Events and QueueStatus (app_queue registers it with none) need no
    # class.
}

# The read classes the daemon needs, and the events of each it relies on.
READ_CLASSES: Mapping[str, tuple[str, ...]] = {
    "call": (
        "Newchannel",
        "Newstate",
        "Hangup",
        "HangupRequest",
        "SoftHangupRequest",
        "BridgeEnter",
        "BridgeLeave",
        "Hold",
        "Unhold",
        "MusicOnHoldStart",
        "MusicOnHoldStop",
        "ChannelTalkingStart",
        "ChannelTalkingStop",
        "OriginateResponse",
    ),
    "dialplan": ("VarSet",),
    "dtmf": ("DTMFEnd",),
    "agent": ("AgentConnect",),
    "user": ("UserEvent",),
}

# The least write classes covering every action the daemon sends.
NEEDED_WRITE_CLASSES: tuple[str, ...] = ("call", "originate", "system", "user")

PERMISSION_DENIED = "permission denied"
# Originate's own refusal of an application for a user without "system" (see above).
ORIGINATE_FORBIDDEN = ("originate access forbidden", "requires the additional system privilege")


def is_permission_denied(message: str) -> bool:
    """Whether an error response's ``Message`` is Asterisk's refusal for a missing class."""
    return message.strip().lower() == PERMISSION_DENIED


def is_originate_forbidden(message: str) -> bool:
    """Whether an Originate's error ``Message`` is the refusal of its application for a user
    without the ``system`` class (either version's wording)."""
    text = message.strip().lower()
    return any(words in text for words in ORIGINATE_FORBIDDEN)


def originate_forbidden_advice(application: str, username: str, message: str) -> str:
    """What to add to ``manager.conf`` when Asterisk refuses to Originate ``application``."""
    return (
        f"Asterisk refused to Originate into {application} ({message.strip()}): the AMI "
        f"user '{username}' lacks the write class 'system', which Asterisk requires to "
        f"start {application} from Originate; add it to 'write =' in the [{username}] "
        f"section of manager.conf (the daemon needs write = {','.join(NEEDED_WRITE_CLASSES)})"
    )


def missing_class_advice(action: str, username: str) -> str:
    """What to add to ``manager.conf`` so that ``action`` is accepted for ``username``."""
    classes = WRITE_CLASSES.get(action)
    if not classes:
        return (
            f"the AMI user '{username}' may not send {action}; see "
            "dialplan/asterisk/manager.conf.sample for the classes the daemon needs"
        )
    wanted = " or ".join(f"'{c}'" for c in classes)
    return (
        f"the AMI user '{username}' lacks the write class {wanted} that {action} needs: "
        f"add it to 'write =' in the [{username}] section of manager.conf "
        f"(the daemon needs write = {','.join(NEEDED_WRITE_CLASSES)})"
    )
