"""Plan documents and their JSON text: one shape for stored plans and impact plans."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from stackcascade.domain.cascade import Edge, TriggerOn, plan
from stackcascade.domain.deployments import Operation
from stackcascade.services.plan_documents import (
    edge_document,
    edge_json,
    edges_json,
    plan_document,
    plan_json,
    plan_of,
    to_json,
)

texts = st.text(max_size=12)
edges = st.builds(
    Edge,
    texts,
    texts,
    st.lists(texts, max_size=3).map(tuple),
    st.lists(texts, max_size=2).map(tuple),
    st.sampled_from(TriggerOn),
    st.booleans(),
)


@given(edges)
def test_an_edge_is_written_exactly_as_its_document_would_be(edge: Edge) -> None:
    assert edge_json(edge) == json.dumps(edge_document(edge), ensure_ascii=False, separators=(",", ":"))
    assert list(edge_document(edge)) == ["upstream", "downstream", "filters", "groups", "triggerOn", "requireApproval"]


def test_a_plan_as_text_is_its_document_and_reads_back_as_the_same_plan() -> None:
    diamond = [
        Edge("network/prod", "database/prod", ("update_succeeded",)),
        Edge("network/prod", "cluster/prod", ("update_succeeded",), trigger_on=TriggerOn.OUTPUTS_CHANGED),
        Edge("database/prod", "app/prod", require_approval=True),
        Edge("cluster/prod", "app/prod", (), ("stack",)),
    ]
    cascade = plan("network/prod", Operation.UPDATE, diamond)
    assert cascade is not None
    text = plan_json(cascade, "update")
    assert text == to_json(plan_document(cascade, "update"))
    assert plan_of(json.loads(text)) == cascade
    assert json.loads(f"[{edges_json(cascade.edges)}]") == plan_document(cascade, "update")["edges"]


def test_no_plan_is_the_empty_plan_of_the_operation() -> None:
    assert json.loads(plan_json(None, "destroy")) == {
        "root": None,
        "operation": "destroy",
        "members": [],
        "waves": [],
        "edges": [],
    }
