"""``pbx-agent callbacks list|show|cancel|promise|done|overdue``: the callback work orders.

``list`` shows jobs (filter by ``--status`` and ``--number``), ``show ID`` one job's work
order with every attempt (time, outcome, cause, machine-detection result), ``cancel ID
--reason`` stops a pending job, ``promise NUMBER --within 72h --note`` registers a promised
callback, ``done ID --note`` records a job kept by hand (a promise an agent kept by phone),
``overdue`` lists promises not kept by their deadline. Times are shown in the site's zone.
"""

from __future__ import annotations

import argparse
from typing import Any

from pbx_agent.cli.common import add_config_option
from pbx_agent.cli.db import fail, local_time, parse_duration, print_line, run_with_store, table
from pbx_agent.clock import LoopClock
from pbx_agent.config import Config
from pbx_agent.numbers import NormalizedNumber, normalize
from pbx_agent.policies.callbacks import CallbackJob, CallbackRules, JobStatus
from pbx_agent.services.callbacks import (
    CallbackDial,
    CallbackNotPlacedError,
    CallbackService,
    NumberUnusableError,
)
from pbx_agent.store import Store


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "callbacks",
        help="list, inspect, cancel and promise callbacks (R7 work orders)",
        description="The callback jobs in the configured store, as work orders.",
    )
    sub = parser.add_subparsers(dest="callbacks_command", metavar="ACTION")
    sub.required = True

    listing = sub.add_parser("list", help="list callback jobs, newest first")
    add_config_option(listing)
    listing.add_argument(
        "--status",
        action="append",
        choices=[str(s) for s in JobStatus],
        help="only jobs in this status (repeatable)",
    )
    listing.add_argument("--number", help="only jobs for this number (any written form)")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    listing.set_defaults(handler=handle_list)

    show = sub.add_parser("show", help="one job's work order with every attempt")
    add_config_option(show)
    show.add_argument("job_id", metavar="ID", type=int)
    show.set_defaults(handler=handle_show)

    cancel = sub.add_parser("cancel", help="cancel a pending job")
    add_config_option(cancel)
    cancel.add_argument("job_id", metavar="ID", type=int)
    cancel.add_argument("--reason", required=True, help="why (kept in the work order)")
    cancel.set_defaults(handler=handle_cancel)

    promise = sub.add_parser("promise", help="register a promised callback with a deadline")
    add_config_option(promise)
    promise.add_argument("number", metavar="NUMBER")
    promise.add_argument(
        "--within",
        type=parse_duration,
        help="deadline from now, e.g. 72h or 3d (default: promised_default_deadline_h)",
    )
    promise.add_argument("--note", default="", help="what was promised")
    promise.set_defaults(handler=handle_promise)

    done = sub.add_parser("done", help="record a job (a promise) as kept by hand")
    add_config_option(done)
    done.add_argument("job_id", metavar="ID", type=int)
    done.add_argument("--note", default="", help="how it was kept")
    done.set_defaults(handler=handle_done)

    overdue = sub.add_parser("overdue", help="promises not kept by their deadline")
    add_config_option(overdue)
    overdue.set_defaults(handler=handle_overdue)


class _AdminDialer:
    """The command line never places calls; the daemon's scheduler does."""

    async def place_callback(self, request: CallbackDial) -> None:
        msg = f"the command line does not place calls ({request.request_id})"
        raise CallbackNotPlacedError(msg)

    async def abandon(self, request_id: str) -> None:
        """Calls ringing now are the daemon's: the command line cannot reach them."""
        del request_id


def _service(store: Store, config: Config) -> CallbackService:
    rules = CallbackRules.from_standards(config.standards_for(), config.site.zone)
    return CallbackService(
        store,
        _AdminDialer(),
        rules,
        clock=LoopClock(),
        default_region=config.site.default_region,
        owner="pbx-agent-cli",
    )


def _job_rows(jobs: list[CallbackJob], config: Config) -> list[list[object]]:
    zone = config.site.zone
    return [
        [
            job.id,
            job.status,
            job.kind,
            job.number,
            job.attempts_made,
            local_time(job.next_attempt_at, zone),
            local_time(job.deadline_at, zone),
            local_time(job.created_at, zone),
            job.finish_reason or job.reason,
        ]
        for job in jobs
    ]


_JOB_HEADERS = (
    "ID",
    "STATUS",
    "KIND",
    "NUMBER",
    "TRIES",
    "NEXT ATTEMPT",
    "DEADLINE",
    "CREATED",
    "REASON",
)


def handle_list(args: argparse.Namespace) -> int:
    async def listing(store: Store, config: Config) -> int:
        number = None
        if args.number:
            normalized = normalize(args.number, config.site.default_region)
            number = normalized.e164 if isinstance(normalized, NormalizedNumber) else args.number
        statuses = [JobStatus(s) for s in args.status or []]
        jobs = await store.callbacks.list_jobs(statuses=statuses, number=number, limit=args.limit)
        if not jobs:
            print_line("no callback jobs")
            return 0
        print_line(table(_JOB_HEADERS, _job_rows(jobs, config)).rstrip("\n"))
        return 0

    return run_with_store(args, listing)


def handle_show(args: argparse.Namespace) -> int:
    async def show(store: Store, config: Config) -> int:
        order = await store.callbacks.work_order(args.job_id)
        if order is None:
            return fail(f"no callback job {args.job_id}")
        job, attempts = order
        zone = config.site.zone
        fields = [
            ("job", job.id),
            ("number", job.number),
            ("kind", job.kind),
            ("status", job.status),
            ("reason", job.reason),
            ("trigger call", job.trigger_call_id or "-"),
            ("trigger cause", job.trigger_cause or "-"),
            ("target", job.target or "-"),
            ("created", local_time(job.created_at, zone)),
            ("window ends", local_time(job.window_ends_at, zone)),
            ("deadline", local_time(job.deadline_at, zone)),
            ("next attempt", local_time(job.next_attempt_at, zone)),
            ("attempts made", job.attempts_made),
            ("finished", local_time(job.finished_at, zone)),
            ("finish reason", job.finish_reason or "-"),
            ("note", job.note or "-"),
        ]
        width = max(len(name) for name, _ in fields)
        for name, value in fields:
            print_line(f"{name.ljust(width)}  {value}")
        print_line("")
        if not attempts:
            print_line("no attempts yet")
            return 0
        rows = [
            [
                a.attempt_no,
                local_time(a.dialled_at, zone),
                local_time(a.answered_at, zone),
                local_time(a.ended_at, zone),
                a.outcome,
                "-" if a.cause is None else a.cause,
                a.cause_text or a.tech_cause or "-",
                f"{a.amd_result} {a.amd_cause}".strip() or "-",
                a.placed_by,
            ]
            for a in attempts
        ]
        headers = ("#", "DIALLED", "ANSWERED", "ENDED", "OUTCOME", "CAUSE", "DETAIL", "AMD", "BY")
        print_line(table(headers, rows).rstrip("\n"))
        return 0

    return run_with_store(args, show)


def handle_cancel(args: argparse.Namespace) -> int:
    async def cancel(store: Store, config: Config) -> int:
        job = await _service(store, config).cancel(args.job_id, args.reason)
        if job is None:
            return fail(f"callback job {args.job_id} does not exist or is already finished")
        print_line(f"callback job {job.id} cancelled: {args.reason}")
        return 0

    return run_with_store(args, cancel)


def handle_promise(args: argparse.Namespace) -> int:
    async def promise(store: Store, config: Config) -> int:
        service = _service(store, config)
        within = args.within or parse_duration(
            f"{config.standards_for().callbacks.promised_default_deadline_h}h"
        )
        deadline = service.now_epoch() + within.total_seconds()
        try:
            job = await service.register_promise(args.number, deadline, args.note)
        except NumberUnusableError as exc:
            return fail(str(exc))
        zone = config.site.zone
        print_line(
            f"promise {job.id} registered for {job.number}: deadline "
            f"{local_time(job.deadline_at, zone)}, first attempt "
            f"{local_time(job.next_attempt_at, zone)}"
        )
        return 0

    return run_with_store(args, promise)


def handle_done(args: argparse.Namespace) -> int:
    async def done(store: Store, config: Config) -> int:
        job = await _service(store, config).mark_done(args.job_id, args.note)
        if job is None:
            return fail(f"callback job {args.job_id} does not exist or is already finished")
        if job.status is JobStatus.OVERDUE:
            print_line(
                f"callback job {job.id} was kept after its deadline: recorded, and it stays "
                "overdue (a violation in the report)"
            )
            return 0
        print_line(f"callback job {job.id} recorded as done")
        return 0

    return run_with_store(args, done)


def handle_overdue(args: argparse.Namespace) -> int:
    async def overdue(store: Store, config: Config) -> int:
        jobs = await _service(store, config).overdue_promises()
        if not jobs:
            print_line("no overdue promises")
            return 0
        print_line(table(_JOB_HEADERS, _job_rows(jobs, config)).rstrip("\n"))
        return 0

    return run_with_store(args, overdue)
