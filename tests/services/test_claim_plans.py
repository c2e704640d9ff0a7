"""Claiming should not slow down as finished deployments pile up: on SQLite its queries find active
deployments through the partial index of active deployments, not by scanning an org's or a stack's
whole history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from stackcascade.store import deployments as rows
from stackcascade.store.db import Database


def _plans(tmp_path: Path, run: Any) -> list[str]:
    db = Database(f"sqlite:///{tmp_path / 'plans.db'}")
    db.migrate()
    engine = db._sqlite_writer
    seen: list[str] = []

    def explain(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            plan = cursor.connection.execute("EXPLAIN QUERY PLAN " + statement, params).fetchall()
            seen.append(" | ".join(str(row[-1]) for row in plan))

    sa.event.listen(engine, "before_cursor_execute", explain)
    try:
        with engine.connect() as conn:
            run(conn)
    finally:
        sa.event.remove(engine, "before_cursor_execute", explain)
        engine.dispose()
    return seen


def test_counting_an_orgs_active_deployments_goes_through_its_stacks(tmp_path: Path) -> None:
    [plan] = _plans(tmp_path, lambda conn: conn.execute(rows._ACTIVE_IN_ORG, {"b_org": "acme"}))
    assert "uq_deployments_one_active_per_stack" in plan
    assert "ix_deployments_org_seq" not in plan


def test_head_of_line_looks_only_at_active_and_older_deployments(tmp_path: Path) -> None:
    [plan] = _plans(tmp_path, lambda conn: conn.execute(rows._HEADS_OF_LINE, {"b_org": "acme", "b_limit": 1}))
    assert "uq_deployments_one_active_per_stack" in plan
    assert "(stack_id=?)" not in plan.replace("uq_deployments_one_active_per_stack (stack_id=?)", "")
