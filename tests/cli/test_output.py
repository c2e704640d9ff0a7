"""Tables and details as the CLI prints them."""

from __future__ import annotations

import pytest

from stackcascade.cli.output import print_table

LONG_ID = "cd95ccd4-1d2e-4f89-9a6b-44f89b3aefba"


@pytest.mark.parametrize("columns", [80, 120])
def test_an_id_column_is_never_wrapped_so_the_id_can_be_copied(
    columns: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    reason = "upstream network/prod failed: " + "the command exited with status 1 " * 4
    print_table(
        ("ID", "ROOT", "OPERATION", "STATUS", "CREATED", "REASON"),
        [(LONG_ID, "network/prod", "update", "failed", "2026-11-24 09:00:00", reason)],
        empty="none",
    )
    printed = capsys.readouterr().out
    assert LONG_ID in printed, printed
    assert max(len(line) for line in printed.splitlines()) <= columns, "the other columns wrap instead"
