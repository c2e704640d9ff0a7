"""The graph page over real HTTP on both databases: the drawing, its marks, the live state, who may see it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

import httpx2
import pytest

from tests.support import LiveServer
from tests.web.console import console_client

DIAMOND = [("network", "database"), ("network", "cluster"), ("database", "app"), ("cluster", "app")]
SCRIPT = {"X-Requested-With": "console"}


@dataclass
class Drawn:
    """What the SVG says, read the way a browser would: node groups with their link, edge groups."""

    nodes: dict[str, dict[str, str]] = field(default_factory=dict)
    edges: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    texts: dict[str, list[str]] = field(default_factory=dict)


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.drawn = Drawn()
        self.node: str | None = None
        self.edge: tuple[str, str] | None = None
        self.in_text = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "g" and "data-stack" in a:
            self.node = a["data-stack"]
            self.drawn.nodes[self.node] = dict(a)
            self.drawn.texts[self.node] = []
        elif tag == "g" and "data-from" in a:
            self.edge = (a["data-from"], a["data-to"])
            self.drawn.edges[self.edge] = dict(a) | {"marks": ""}
        elif tag == "a" and self.node:
            self.drawn.nodes[self.node] |= {"href": a["href"], "aria-label": a.get("aria-label", "")}
        elif tag == "use" and self.edge:
            self.drawn.edges[self.edge]["marks"] += a.get("href", "")
        elif tag == "text":
            self.in_text = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "text":
            self.in_text = False
        elif tag == "a" and self.node:
            self.node = None
        elif tag == "g" and self.edge:
            self.edge = None

    def handle_data(self, data: str) -> None:
        if self.in_text and self.node:
            self.drawn.texts[self.node].append(data.strip())
        elif self.in_text and self.edge:
            self.drawn.edges[self.edge]["label"] = data.strip()


def read(html: str) -> Drawn:
    reader = _Reader()
    reader.feed(html)
    return reader.drawn


def y_of(node: dict[str, str]) -> float:
    found = re.fullmatch(r"translate\(([-\d.]+) ([-\d.]+)\)", node["transform"])
    assert found, node["transform"]
    return float(found.group(2))


def make_diamond(server: LiveServer, org: str) -> None:
    """network -> {database (only if outputs change), cluster (once approved)} -> app, through the REST API."""
    with server.client() as api:
        settings = {"sourceContext": {"git": {"repoUrl": "file:///tmp/nowhere", "branch": "main"}}}
        for project in ("network", "database", "cluster", "app"):
            assert api.post(f"/api/stacks/{org}/{project}", json={"stackName": "prod"}).status_code == 200
            saved = api.post(f"/api/stacks/{org}/{project}/prod/deployments/settings", json=settings)
            assert saved.status_code == 200, saved.text
        for up, down in DIAMOND:
            edge: dict[str, object] = {
                "format": "pulumi_deployments",
                "payloadUrl": f"{down}/prod",
                "filters": ["update_succeeded"],
            }
            if (up, down) == ("network", "database"):
                edge["triggerOn"] = "outputs-changed"
            if (up, down) == ("network", "cluster"):
                edge["requireApproval"] = True
            created = api.post(f"/api/stacks/{org}/{up}/prod/hooks", json=edge)
            assert created.status_code == 201, created.text


def org_token(server: LiveServer, org: str, role: str) -> str:
    with server.client() as api:
        created = api.post("/api/tokens", json={"name": f"{role}-{org}", "org": org, "role": role})
        assert created.status_code == 201, created.text
        return str(created.json()["token"])


@pytest.fixture
def diamond(live_server: LiveServer, org: str) -> str:
    make_diamond(live_server, org)
    return org


def test_every_stack_is_a_link_to_its_page_and_upstream_is_drawn_above_downstream(
    live_server: LiveServer, diamond: str
) -> None:
    with console_client(live_server.url, live_server.admin_token) as client:
        page = client.get(f"/{diamond}/~/graph")
    assert page.status_code == 200, page.text
    assert '<svg id="graph-svg"' in page.text and 'aria-current="page"' in page.text
    drawn = read(page.text)
    assert set(drawn.nodes) == {"network/prod", "database/prod", "cluster/prod", "app/prod"}
    for stack, node in drawn.nodes.items():
        project = stack.split("/")[0]
        assert node["href"] == f"/{diamond}/{project}/prod"
        assert node["aria-label"] == f"{stack}, never deployed"  # an accessible name with the state in words
        assert node["data-status"] == "never" and "st-none" in node["class"]
        assert drawn.texts[stack][:2] == [stack, "never deployed"]
    y = {stack.split("/")[0]: y_of(node) for stack, node in drawn.nodes.items()}
    assert y["network"] < y["database"] == y["cluster"] < y["app"]
    assert set(drawn.edges) == {(f"{u}/prod", f"{d}/prod") for u, d in DIAMOND}


def test_outputs_changed_and_approval_edges_are_drawn_differently_and_explained(
    live_server: LiveServer, diamond: str
) -> None:
    with console_client(live_server.url, live_server.admin_token) as client:
        page = client.get(f"/{diamond}/~/graph").text
    edges = read(page).edges
    conditional = edges[("network/prod", "database/prod")]
    assert "conditional" in conditional["class"].split() and conditional["label"] == "if outputs change"
    gated = edges[("network/prod", "cluster/prod")]
    assert "gated" in gated["class"].split() and gated["marks"] == "#icon-lock"
    plain = edges[("database/prod", "app/prod")]
    assert plain["class"] == "edge" and plain["marks"] == "" and "label" not in plain
    # Hovering an edge (and the edge list) says when it fires, in words.
    assert "network/prod deploys database/prod after update succeeded, only if its outputs changed" in page
    assert "network/prod deploys cluster/prod after update succeeded, once approved" in page
    assert "The 4 deployment edges as a list" in page
    # The legend explains every colour and every kind of line.
    for words in ("never deployed", "awaiting approval", "if outputs change", "approval", "paused", "Legend"):
        assert words in page


def test_paused_and_approval_gated_stacks_are_marked_in_words(live_server: LiveServer, diamond: str) -> None:
    with live_server.client() as api:
        assert api.post(f"/api/stacks/{diamond}/app/prod/deployments/pause").status_code in (200, 204)
        gate = api.patch(f"/api/stacks/{diamond}/database/prod/cascadesettings", json={"requireApproval": True})
        assert gate.status_code == 200, gate.text
    with console_client(live_server.url, live_server.admin_token) as client:
        drawn = read(client.get(f"/{diamond}/~/graph").text)
        state = client.get(f"/{diamond}/~/graph/state", headers=SCRIPT).json()["nodes"]
    app, database = drawn.nodes["app/prod"], drawn.nodes["database/prod"]
    assert "paused" in app["class"].split() and "paused" in drawn.texts["app/prod"]
    assert app["aria-label"] == "app/prod, never deployed, paused"
    assert "gated" in database["class"].split() and "approval required" in drawn.texts["database/prod"]
    assert state["app/prod"]["paused"] is True and state["database/prod"]["gated"] is True


def test_the_state_follows_a_running_cascade_and_shows_a_member_awaiting_approval(
    live_server: LiveServer, diamond: str
) -> None:
    with console_client(live_server.url, live_server.admin_token) as client:
        before = client.get(f"/{diamond}/~/graph/state", headers=SCRIPT)
        assert before.status_code == 200 and before.headers["content-type"].startswith("application/json")
        assert before.headers["cache-control"] == "no-store"
        body = before.json()
        assert body["nodes"]["network/prod"] == {
            "status": "never",
            "label": "never deployed",
            "cls": "st-none",
            "flags": "",
            "paused": False,
            "gated": False,
            "name": "network/prod, never deployed",
        }
        assert "No cascade is running" in body["cascades"]
        # An update of network outside stackcascade starts a cascade: cluster waits for an approval,
        # database is queued (no runner here), app waits for both.
        with live_server.client() as api:
            event = api.post(
                f"/api/stacks/{diamond}/network/prod/events",
                json={"kind": "update_succeeded", "outputs": {"vpc": "v1"}},
            )
            assert event.status_code == 202, event.text
            cascade_id = event.json()["cascadeId"]
        after = client.get(f"/{diamond}/~/graph/state", headers=SCRIPT).json()
        nodes = after["nodes"]
        assert (nodes["cluster/prod"]["status"], nodes["cluster/prod"]["label"]) == (
            "awaiting-approval",
            "awaiting approval",
        )
        assert nodes["cluster/prod"]["cls"] == "st-gate"
        assert (nodes["database/prod"]["label"], nodes["database/prod"]["cls"]) == ("queued", "st-wait")
        assert (nodes["app/prod"]["status"], nodes["app/prod"]["label"]) == ("waiting", "waiting for upstream")
        assert after["shape"] == body["shape"]  # same stacks, same edges: no redraw needed
        assert "awaiting approval" in after["cascades"] and "cluster/prod" in after["cascades"]
        assert f"/{diamond}/~/cascades/{cascade_id}" in after["cascades"]
        # The page itself, drawn now, says the same.
        drawn = read(client.get(f"/{diamond}/~/graph").text)
        assert drawn.texts["cluster/prod"][1] == "awaiting approval"
        assert "st-gate" in drawn.nodes["cluster/prod"]["class"]


def test_a_member_skipped_in_a_running_cascade_shows_skipped_not_an_older_deployment(
    live_server: LiveServer, diamond: str
) -> None:
    """Not the stack's newest deployment's status (here: none, so "never deployed"); that is for stacks
    outside running cascades."""
    with live_server.client() as api:
        event = api.post(
            f"/api/stacks/{diamond}/network/prod/events", json={"kind": "update_succeeded", "outputs": {"vpc": "v1"}}
        )
        cascade_id = event.json()["cascadeId"]
        rejected = api.post(f"/api/orgs/{diamond}/cascades/{cascade_id}/members/cluster/prod/reject")
        assert rejected.status_code == 200, rejected.text
        cascade = api.get(f"/api/orgs/{diamond}/cascades/{cascade_id}").json()
    assert cascade["status"] == "running"  # database is still queued: no runner here
    members = {member["stack"]: member for member in cascade["members"]}
    assert members["cluster/prod"]["status"] == "skipped"
    with console_client(live_server.url, live_server.admin_token) as client:
        node = client.get(f"/{diamond}/~/graph/state", headers=SCRIPT).json()["nodes"]["cluster/prod"]
        assert (node["status"], node["label"], node["cls"]) == ("skipped", "skipped", "st-skip")
        drawn = read(client.get(f"/{diamond}/~/graph").text)
        assert drawn.texts["cluster/prod"][1] == "skipped"


def test_a_new_edge_or_stack_changes_the_shape_and_the_drawing_fragment(live_server: LiveServer, diamond: str) -> None:
    with console_client(live_server.url, live_server.admin_token) as client:
        shape = client.get(f"/{diamond}/~/graph/state", headers=SCRIPT).json()["shape"]
        drawing = client.get(f"/{diamond}/~/graph/drawing", headers=SCRIPT)
        assert drawing.status_code == 200 and f'data-shape="{shape}"' in drawing.text
        assert "<html" not in drawing.text  # a fragment, not a page
        with live_server.client() as api:
            assert api.post(f"/api/stacks/{diamond}/dns", json={"stackName": "prod"}).status_code == 200
        grown = client.get(f"/{diamond}/~/graph/state", headers=SCRIPT).json()
        assert grown["shape"] != shape and "dns/prod" in grown["nodes"]
        fresh = client.get(f"/{diamond}/~/graph/drawing", headers=SCRIPT).text
        assert 'data-stack="dns/prod"' in fresh and "Stacks with no deployment edges" in fresh
        with live_server.client() as api:
            edge = {"format": "pulumi_deployments", "payloadUrl": "network/prod", "filters": ["update_succeeded"]}
            assert api.post(f"/api/stacks/{diamond}/dns/prod/hooks", json=edge).status_code == 201
        linked = client.get(f"/{diamond}/~/graph/state", headers=SCRIPT).json()["shape"]
        assert linked not in (shape, grown["shape"])
        drawn = read(client.get(f"/{diamond}/~/graph").text)
        assert y_of(drawn.nodes["dns/prod"]) < y_of(drawn.nodes["network/prod"])


def test_an_org_with_stacks_but_no_edges_says_how_to_draw_one(live_server: LiveServer, org: str) -> None:
    with live_server.client() as api:
        assert api.post(f"/api/stacks/{org}/lonely", json={"stackName": "prod"}).status_code == 200
    with console_client(live_server.url, live_server.admin_token) as client:
        page = client.get(f"/{org}/~/graph").text
    assert "No stack triggers another yet" in page and "pulumi_deployments" in page
    assert read(page).nodes["lonely/prod"]["href"] == f"/{org}/lonely/prod"


def test_a_viewer_sees_the_graph_without_any_write_control(live_server: LiveServer, diamond: str) -> None:
    token = org_token(live_server, diamond, "viewer")
    with console_client(live_server.url, token) as client:
        page = client.get(f"/{diamond}/~/graph")
        assert page.status_code == 200
        assert len(read(page.text).nodes) == 4
        forms = re.findall(r'<form[^>]*method="post"[^>]*action="([^"]+)"', page.text)
        assert forms == ["/~/logout"]
        assert client.get(f"/{diamond}/~/graph/state", headers=SCRIPT).status_code == 200


def test_another_orgs_graph_is_not_found(live_server: LiveServer, diamond: str, org: str) -> None:
    other = f"{org}-other"
    with live_server.client() as api:
        assert api.post(f"/api/stacks/{other}/secret", json={"stackName": "prod"}).status_code == 200
    token = org_token(live_server, diamond, "admin")
    with console_client(live_server.url, token) as client:
        for path in (f"/{other}/~/graph", f"/{other}/~/graph/drawing"):
            hidden = client.get(path)
            assert hidden.status_code == 404 and "secret/prod" not in hidden.text
        state = client.get(f"/{other}/~/graph/state", headers=SCRIPT)
        assert state.status_code == 404 and state.json()["code"] == 404
    with console_client(live_server.url, live_server.admin_token) as client:
        missing = client.get(f"/{org}-never-created/~/graph")
        assert missing.status_code == 404 and "not found" in missing.text


def test_without_a_session_the_page_asks_to_sign_in_and_the_state_answers_401(
    live_server: LiveServer, diamond: str
) -> None:
    with httpx2.Client(base_url=live_server.url) as client:
        page = client.get(f"/{diamond}/~/graph")
        assert page.status_code == 303 and page.headers["location"].startswith("/~/login?next=")
        state = client.get(f"/{diamond}/~/graph/state", headers=SCRIPT)
        assert state.status_code == 401 and "sign in" in state.json()["message"]


def test_a_running_cascade_older_than_fifty_newer_ones_stays_on_the_graph_and_heads_the_cascade_list(
    live_server: LiveServer, org: str
) -> None:
    with live_server.client() as api:
        for project in ("gateroot", "gated", "busy", "leaf"):
            assert api.post(f"/api/stacks/{org}/{project}", json={"stackName": "prod"}).status_code == 200
        gate = {"format": "pulumi_deployments", "payloadUrl": "gated/prod", "requireApproval": True}
        assert api.post(f"/api/stacks/{org}/gateroot/prod/hooks", json=gate).status_code == 201
        # busy's edge fires only if its outputs change, and its updates report none: each is a cascade over at once.
        idle = {"format": "pulumi_deployments", "payloadUrl": "leaf/prod", "triggerOn": "outputs-changed"}
        assert api.post(f"/api/stacks/{org}/busy/prod/hooks", json=idle).status_code == 201
        gated = api.post(f"/api/stacks/{org}/gateroot/prod/events", json={"kind": "update_succeeded"})
        assert gated.status_code == 202, gated.text
        gated_id = gated.json()["cascadeId"]
        finished = []
        for _ in range(51):
            event = api.post(f"/api/stacks/{org}/busy/prod/events", json={"kind": "update_succeeded"})
            assert event.status_code == 202, event.text
            finished.append(event.json()["cascadeId"])
        assert api.get(f"/api/orgs/{org}/cascades/{finished[-1]}").json()["status"] == "succeeded"
        assert api.get(f"/api/orgs/{org}/cascades/{gated_id}").json()["status"] == "running"
    with console_client(live_server.url, live_server.admin_token) as client:
        state = client.get(f"/{org}/~/graph/state", headers=SCRIPT).json()
        assert state["nodes"]["gated/prod"]["label"] == "awaiting approval"
        assert f"/{org}/~/cascades/{gated_id}" in state["cascades"]
        listed = client.get(f"/{org}/~/cascades").text
        running, _, rest = listed.partition('id="finished-title"')
        assert f'href="/{org}/~/cascades/{gated_id}"' in running and gated_id not in rest
        assert finished[-1] in rest and finished[0] not in listed  # 50 finished ones a page
        older = re.search(r'href="(/[^"]+\?after=[^"]+)" rel="next">Older cascades', listed)
        assert older, listed
        page = client.get(older.group(1).replace("&amp;", "&"))
        assert page.status_code == 200
        assert finished[0] in page.text and gated_id not in page.text and finished[1] not in page.text
        assert "Older cascades" not in page.text and f'href="/{org}/~/cascades">Newest cascades' in page.text
        assert client.get(f"/{org}/~/cascades", params={"after": "not-a-token"}).status_code == 400
