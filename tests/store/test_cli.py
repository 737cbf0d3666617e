"""The admin commands (db, callbacks, flags), run in-process against a real store."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pbx_agent.cli import main
from pbx_agent.policies.callbacks import (
    AttemptOutcome,
    CallbackRules,
    JobKind,
    JobStatus,
    after_attempt,
)
from pbx_agent.store import AttemptResult, NewJob, Store
from tests.store.databases import create_pg_database, drop_pg_database, pg_url

# These tests drive the CLI, which runs its own event loop, so they are synchronous and
# build their databases themselves instead of using the async fixtures.


def write_config(directory: Path, url: str) -> Path:
    path = directory / "pbx-agent.toml"
    path.write_text(f'[store]\nurl = "{url}"\n', encoding="utf-8")
    return path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A configuration whose store exists and is migrated (`db upgrade` ran)."""
    path = write_config(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}")
    assert main(["db", "upgrade", "--config", str(path)]) == 0
    return path


@pytest.fixture
def empty_config(tmp_path: Path) -> Path:
    """A configuration whose store has never been migrated."""
    return write_config(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'empty.sqlite3'}")


def url_of(config: Path) -> str:
    return config.read_text(encoding="utf-8").split('"')[1]


def with_store(config: Path, action):
    async def run():
        store = Store.open(url_of(config))
        try:
            await store.upgrade()
            return await action(store)
        finally:
            await store.close()

    return asyncio.run(run())


def test_db_current_says_an_empty_database_is_behind(
    empty_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before any upgrade `db current` exits 1 and says what to run."""
    assert main(["db", "current", "--config", str(empty_config)]) == 1
    out = capsys.readouterr().out
    assert "never migrated" in out
    assert "pbx-agent db upgrade" in out


def test_db_upgrade_brings_the_schema_to_the_head(
    empty_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`db upgrade` migrates; `db current` then exits 0 with the head revision."""
    assert main(["db", "upgrade", "--config", str(empty_config)]) == 0
    assert main(["db", "current", "--config", str(empty_config)]) == 0
    out = capsys.readouterr().out
    assert f"schema revision {Store.head_revision()}" in out


@pytest.mark.postgres
def test_db_upgrade_works_on_postgresql(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same command migrates a PostgreSQL store."""
    name = asyncio.run(create_pg_database())
    try:
        config = write_config(tmp_path, pg_url(name))
        assert main(["db", "upgrade", "--config", str(config)]) == 0
        assert "schema at revision" in capsys.readouterr().out
    finally:
        asyncio.run(drop_pg_database(name))


def test_store_failure_exits_one_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unreachable database is reported on stderr, exit status 1."""
    config = write_config(tmp_path, "postgresql+asyncpg://postgres@127.0.0.1:1/none")
    assert main(["db", "current", "--config", str(config)]) == 1
    assert "schema revision failed" in capsys.readouterr().err


def test_admin_commands_refuse_an_unmigrated_store(
    empty_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """callbacks/flags do not migrate behind the admin's back: they say to run db upgrade."""
    assert main(["flags", "list", "--config", str(empty_config)]) == 1
    assert "run `pbx-agent db upgrade` first" in capsys.readouterr().err


def test_bad_configuration_exits_two(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Configuration problems are listed and the command exits 2 without touching a store."""
    config = write_config(tmp_path, "mysql://nowhere/x")
    assert main(["callbacks", "list", "--config", str(config)]) == 2
    assert "store" in capsys.readouterr().err


def test_promise_is_registered_with_its_deadline(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`callbacks promise NUMBER --within 72h --note` stores a promised job, normalised."""
    code = main(
        [
            "callbacks",
            "promise",
            "8 916 123-45-67",
            "--within",
            "72h",
            "--note",
            "tariff",
            "--config",
            str(config),
        ]
    )
    assert code == 0
    assert "registered for +79161234567" in capsys.readouterr().out

    async def read(store: Store) -> list:  # type: ignore[type-arg]
        return await store.callbacks.list_jobs()

    [job] = with_store(config, read)
    assert job.kind is JobKind.PROMISED
    assert job.note == "tariff"
    assert job.deadline_at is not None
    assert abs(job.deadline_at - (datetime.now(UTC) + timedelta(hours=72))) < timedelta(minutes=1)


def test_promise_for_an_anonymous_caller_is_refused(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A promise to an unusable number exits 1 and says why."""
    assert main(["callbacks", "promise", "anonymous", "--config", str(config)]) == 1
    assert "number is anonymous" in capsys.readouterr().err


def test_bad_duration_is_refused_by_the_parser(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--within takes 72h, 3d, 90m ...; anything else is a usage error."""
    with pytest.raises(SystemExit):
        main(["callbacks", "promise", "+79161234567", "--within", "soon", "--config", str(config)])
    assert "not a duration" in capsys.readouterr().err


def seed_job_with_attempt(config: Path) -> int:
    async def seed(store: Store) -> int:
        now = datetime.now(UTC)
        job = await store.callbacks.create(
            NewJob(
                number="+79161234567",
                kind=JobKind.ABNORMAL_DROP,
                reason="agent_device_dropped on the agent leg cause 44",
                created_at=now,
                anchor_at=now,
                window_ends_at=now + timedelta(hours=48),
                next_attempt_at=now,
                trigger_call_id="1795339509.26",
                trigger_cause="44",
            )
        )
        [(_, attempt)] = await store.callbacks.claim_due(
            owner="host:1",
            now=now,
            lease=timedelta(seconds=60),
            limit=1,
            max_in_flight=1,
            request_id_for=lambda j, a: f"cb-{j}-{a}",
        )
        await store.callbacks.finish_attempt(
            attempt.request_id,
            AttemptResult(
                AttemptOutcome.BUSY, now, cause=17, cause_text="User busy", tech_cause="486"
            ),
            lambda j, o: after_attempt(j, o, now, CallbackRules()),
        )
        return job.id

    return with_store(config, seed)


def test_list_shows_jobs_and_filters_by_status(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`callbacks list` prints a table; --status filters it."""
    job_id = seed_job_with_attempt(config)
    assert main(["callbacks", "list", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    header, row = out.splitlines()[:2]
    assert header.split()[:4] == ["ID", "STATUS", "KIND", "NUMBER"]
    assert row.split()[:4] == [str(job_id), "scheduled", "abnormal_drop", "+79161234567"]
    assert main(["callbacks", "list", "--status", "done", "--config", str(config)]) == 0
    assert capsys.readouterr().out == "no callback jobs\n"


def test_show_prints_the_work_order_with_every_attempt(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`callbacks show ID`: trigger call, cause, and each attempt with outcome and cause."""
    job_id = seed_job_with_attempt(config)
    assert main(["callbacks", "show", str(job_id), "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "trigger call   1795339509.26" in out
    assert "trigger cause  44" in out
    # Times in the site's zone (ru: Moscow), with the offset that says so.
    created = next(line for line in out.splitlines() if line.startswith("created"))
    assert created.endswith("+03:00")
    attempt_line = out.splitlines()[-1].split()
    assert attempt_line[0] == "1"
    assert "busy" in attempt_line
    assert "17" in attempt_line
    assert "host:1" in attempt_line


def test_show_of_a_missing_job_exits_one(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown id is an error, not an empty page."""
    assert main(["callbacks", "show", "42", "--config", str(config)]) == 1
    assert "no callback job 42" in capsys.readouterr().err


def test_cancel_stops_a_pending_job_with_its_reason(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`callbacks cancel ID --reason` cancels once; a second cancel exits 1."""
    job_id = seed_job_with_attempt(config)
    assert (
        main(
            [
                "callbacks",
                "cancel",
                str(job_id),
                "--reason",
                "wrong number",
                "--config",
                str(config),
            ]
        )
        == 0
    )
    assert (
        main(["callbacks", "cancel", str(job_id), "--reason", "again", "--config", str(config)])
        == 1
    )

    async def read(store: Store):
        return await store.callbacks.get(job_id)

    job = with_store(config, read)
    assert job.status is JobStatus.CANCELLED
    assert job.finish_reason == "wrong number"
    capsys.readouterr()


def test_done_records_a_promise_kept_by_hand(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`callbacks done ID --note` finishes the job as done."""
    assert main(["callbacks", "promise", "+79161234567", "--config", str(config)]) == 0
    assert (
        main(
            [
                "callbacks",
                "done",
                "1",
                "--note",
                "called from the desk phone",
                "--config",
                str(config),
            ]
        )
        == 0
    )

    async def read(store: Store):
        return await store.callbacks.get(1)

    job = with_store(config, read)
    assert job.status is JobStatus.DONE
    assert "desk phone" in job.finish_reason
    capsys.readouterr()


def test_overdue_lists_promises_past_their_deadline(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`callbacks overdue` reports promises not kept in time."""

    async def seed(store: Store) -> None:
        now = datetime.now(UTC)
        await store.callbacks.create(
            NewJob(
                number="+79161234567",
                kind=JobKind.PROMISED,
                reason="promised",
                created_at=now - timedelta(hours=80),
                anchor_at=now - timedelta(hours=32),
                window_ends_at=now - timedelta(hours=8),
                deadline_at=now - timedelta(hours=8),
                next_attempt_at=now - timedelta(hours=9),
            )
        )

    with_store(config, seed)
    assert main(["callbacks", "overdue", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "promised" in out.splitlines()[1]


def test_flag_add_list_remove(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`flags add` normalises and stores the flag; `list` shows it; `remove` clears it."""
    assert (
        main(
            [
                "flags",
                "add",
                "8 (916) 123-45-67",
                "--reason",
                "abuse",
                "--by",
                "sup1",
                "--expires",
                "30d",
                "--config",
                str(config),
            ]
        )
        == 0
    )
    assert main(["flags", "list", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    row = out.splitlines()[-1].split()
    assert row[:3] == ["+79161234567", "abuse", "sup1"]
    assert main(["flags", "remove", "+79161234567", "--config", str(config)]) == 0
    assert main(["flags", "remove", "+79161234567", "--config", str(config)]) == 1
    assert main(["flags", "list", "--config", str(config)]) == 0
    assert capsys.readouterr().out.endswith("no flagged numbers\n")


def test_flag_for_an_unusable_number_is_refused(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A withheld caller id cannot be flagged."""
    assert (
        main(["flags", "add", "restricted", "--reason", "x", "--by", "y", "--config", str(config)])
        == 1
    )
    assert "not a usable phone number" in capsys.readouterr().err


def test_flag_changes_are_recorded_as_decisions(config: Path) -> None:
    """Setting and clearing a flag leaves R9 decisions naming who did it."""
    main(
        [
            "flags",
            "add",
            "+79161234567",
            "--reason",
            "abuse",
            "--by",
            "sup1",
            "--config",
            str(config),
        ]
    )
    main(["flags", "remove", "+79161234567", "--by", "sup2", "--config", str(config)])

    async def read(store: Store):
        now = datetime.now(UTC)
        return await store.decisions.between(now - timedelta(hours=1), now, rule="R9")

    decisions = with_store(config, read)
    assert [(d.action, d.agent) for d in decisions] == [
        ("flag_set", "sup1"),
        ("flag_removed", "sup2"),
    ]


def test_a_schema_newer_than_the_software_is_named_not_upgraded(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A database a newer release migrated: every command (and the daemon's start-up
    upgrade) says so, and none advises `db upgrade`, which cannot help."""
    import sqlalchemy as sa  # noqa: PLC0415

    async def stamp(store: Store) -> None:
        async with store.db.write("stamp a newer revision") as conn:
            await conn.execute(sa.text("UPDATE alembic_version SET version_num='0099_future'"))

    with_store(config, stamp)
    capsys.readouterr()
    for command in (["db", "current"], ["db", "upgrade"], ["callbacks", "list"]):
        assert main([*command, "--config", str(config)]) == 1
        err = capsys.readouterr().err
        assert "'0099_future', which this software does not know" in err
        assert "db upgrade" not in err


def test_a_sqlite_folder_that_cannot_be_made_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """store.url pointing under a file: a one-line reason, exit 1, no traceback."""
    (tmp_path / "file").write_text("", encoding="utf-8")
    config = write_config(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'file' / 'sub' / 'db'}")
    assert main(["db", "upgrade", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "the SQLite database's folder" in err
    assert "cannot be created" in err
