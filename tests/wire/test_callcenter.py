"""mod_callcenter's ``callcenter_config ... list`` answers read as rows."""

from __future__ import annotations

import pytest

from pbx_agent.errors import ProtocolError
from pbx_agent.wire.callcenter import CallcenterListError, parse_list

AGENTS = (
    "name|instance_id|uuid|type|contact|status|state|max_no_answer\n"
    "1001@default|single_box|c0000000-0000-4000-8000-000000000002|callback|user/1001"
    "|Available|In a queue call|3\n"
    "1002@default|single_box||callback|user/1002|Available|Waiting|3\n"
    "+OK\n"
)


def test_rows_are_read_by_the_header() -> None:
    """Each row is a dict of the header's column names."""
    listing = parse_list(AGENTS, loose="contact")
    assert [(r["name"], r["uuid"], r["state"]) for r in listing.rows] == [
        ("1001@default", "c0000000-0000-4000-8000-000000000002", "In a queue call"),
        ("1002@default", "", "Waiting"),
    ]
    assert listing.skipped == 0


def test_columns_in_another_order_are_read_by_name() -> None:
    """An ODBC table may hold the columns in another order (uuid first): the header says."""
    body = "uuid|name|state\nc0|1001@default|In a queue call\n+OK\n"
    [row] = parse_list(body).rows
    assert (row["uuid"], row["name"], row["state"]) == ("c0", "1001@default", "In a queue call")


def test_an_empty_table_is_only_ok() -> None:
    """No row: the module prints no header, only +OK (CRLF or LF)."""
    assert parse_list("+OK\n").rows == ()
    assert parse_list("+OK\r\n\r\n").rows == ()


def test_a_bar_in_the_loose_column_stays_in_it() -> None:
    """A contact dial string with failover bars gives the row more fields: they are the
    contact's, the columns after it read from the end."""
    body = (
        "name|uuid|contact|state|level\n"
        "1001@default|c1|user/1001|user/1001-mobile|sofia/gw/x|In a queue call|1\n"
        "+OK\n"
    )
    [row] = parse_list(body, loose="contact").rows
    assert row["contact"] == "user/1001|user/1001-mobile|sofia/gw/x"
    assert (row["state"], row["level"], row["uuid"]) == ("In a queue call", "1", "c1")


def test_a_row_with_too_many_fields_and_no_loose_column_is_skipped() -> None:
    """Without a column that may hold bars, an overlong row cannot be read: skipped."""
    listing = parse_list("queue|agent|state\nq|a|Ready|extra\nq|b|Ready\n+OK\n")
    assert [r["agent"] for r in listing.rows] == ["b"]
    assert listing.skipped == 1


def test_a_line_feed_in_a_value_skips_the_pieces_never_shifts_them() -> None:
    """A value with a line feed splits its row in two short lines: both skipped, the other
    rows read as they are."""
    body = "name|uuid|contact|state\n1001|c1|user/\n1001|Waiting\n1002|c2|user/1002|Waiting\n+OK\n"
    listing = parse_list(body)
    assert [r["name"] for r in listing.rows] == ["1002"]
    assert listing.skipped == 2


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("-ERR callcenter_config Command not found!\n", "refused"),
        ("-USAGE: callcenter_config agent add [name] [type]\n", "refused"),
        ("name|uuid\n1001|c1\n", "without \\+OK"),
        ("", "without \\+OK"),
    ],
)
def test_a_refusal_or_a_cut_answer_is_a_protocol_error(body: str, says: str) -> None:
    """-ERR / -USAGE, or an answer that does not end with +OK: a ProtocolError naming it."""
    with pytest.raises(CallcenterListError, match=says) as info:
        parse_list(body)
    assert isinstance(info.value, ProtocolError)


def test_control_characters_in_an_error_are_shown_escaped() -> None:
    """The error text quotes the answer with its control characters escaped."""
    with pytest.raises(CallcenterListError) as info:
        parse_list("-ERR bad\x1b[2J\n")
    assert "\x1b" not in str(info.value)
