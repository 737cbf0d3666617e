"""mod_callcenter's ``callcenter_config ... list`` answers (FreeSWITCH), as rows.

``callcenter_config agent list`` and ``callcenter_config tier list`` (``list_result_callback``
in mod_callcenter.c) print, when there is at least one row, a line of the table's column
names joined by ``|``, then one line per row, the values joined by ``|`` as stored: nothing
is escaped. The answer ends with ``+OK``; an error is one ``-ERR ...`` line (``-ERR
callcenter_config Command not found!`` when the module is not loaded). The columns come from
``SELECT *``, so their order and number depend on the module's version and database (SQLite
or ODBC): the header says them, and rows are read by it.

A value holding ``|`` (an agent's ``contact`` is a dial string, where ``|`` separates
failover destinations) gives its row more fields than the header: the extra fields are that
one column's (``loose``), the columns before it read from the start and the ones after from
the end. A value holding a line feed splits its row: pieces with too few fields are skipped
(counted); a piece that happens to have the header's count is read as a row (the agents and
tiers tables hold what the administrator configured, no caller's text). Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from pbx_agent.errors import ProtocolError
from pbx_agent.wire.escaping import printable


class CallcenterListError(ProtocolError):
    """The switch refused the list (``-ERR ...``) or answered something else."""


@dataclass(frozen=True, slots=True)
class CallcenterList:
    rows: tuple[dict[str, str], ...]
    skipped: int = 0  # lines that could not be read as a row


def parse_list(body: str, *, loose: str = "") -> CallcenterList:
    """The rows of one ``callcenter_config ... list`` answer; ``loose``: the one column whose
    values may hold ``|``. Raises ``CallcenterListError`` for ``-ERR``/``-USAGE`` or an
    answer without its ``+OK``."""
    lines = [line.rstrip("\r") for line in body.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    if lines and lines[0].startswith("-"):
        msg = f"callcenter_config refused the list: {printable(lines[0][:200])!r}"
        raise CallcenterListError(msg)
    if not lines or lines[-1].strip() != "+OK":
        msg = f"callcenter_config answered without +OK: {printable(body[-200:])!r}"
        raise CallcenterListError(msg)
    lines.pop()
    if not lines:
        return CallcenterList(())
    header = lines[0].split("|")
    at = header.index(loose) if loose in header else -1
    rows: list[dict[str, str]] = []
    skipped = 0
    for line in lines[1:]:
        fields = line.split("|")
        extra = len(fields) - len(header)
        if extra < 0 or (extra > 0 and at < 0):
            skipped += 1
            continue
        if extra:
            after = len(header) - at - 1
            fields = [
                *fields[:at],
                "|".join(fields[at : at + extra + 1]),
                *fields[len(fields) - after :],
            ]
        rows.append(dict(zip(header, fields, strict=True)))
    return CallcenterList(tuple(rows), skipped)
