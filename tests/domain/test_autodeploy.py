"""Auto Deploy declarations: the document, the diff keyed by edge, and Pulumi YAML programs imported."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from stackcascade.domain.autodeploy import (
    EdgeSpec,
    GateChange,
    declaration_of,
    diff,
    diff_document,
    gate_changes,
    import_pulumi_program,
    is_pulumi_program,
    managed_webhook_name,
    parse_document,
    to_document,
)
from stackcascade.domain.errors import InvalidInput
from stackcascade.domain.names import check_name

# --- the Pulumi YAML programs of Pulumi's documentation, copied exactly -----------------------------------
# Source: "Triggering Dependent Stack Updates" (/docs/deployments/guides/dependent-stack-updates/) and the
# older "Deploying Dependent Stacks" page, as stored in /work/shared/seeds/000_*.txt and 001_*.txt; the
# webhook program appears on both pages.

WEBHOOKS_PROGRAM = """\
name: auto-deploy-demo
runtime: yaml
description: A simple auto-deploy example
resources:
  databaseWebhook:
    type: pulumiservice:Webhook
    properties:
      organizationName: org
      projectName: network
      stackName: prod
      format: pulumi_deployments
      payloadUrl: database/prod
      active: true
      displayName: deploy-database
      filters:
      - update_succeeded
  computeWebhook:
    type: pulumiservice:Webhook
    properties:
      organizationName: org
      projectName: database
      stackName: prod
      format: pulumi_deployments
      payloadUrl: compute/prod
      active: true
      displayName: deploy-compute
      filters:
      - update_succeeded
"""

LAYERED_PROGRAM = """\
name: auto-deploy-demo
runtime: yaml
description: Layered infrastructure with automatic dependent-stack updates
variables:
  stack: prod
resources:
  # The application sits at the top of the graph and has no downstream stacks.
  app:
    type: auto-deploy:AutoDeployer
    properties:
      organization: ${pulumi.organization}
      project: app
      stack: ${stack}
      downstreamRefs: []
  # The database and the cluster each feed the application.
  database:
    type: auto-deploy:AutoDeployer
    properties:
      organization: ${pulumi.organization}
      project: database
      stack: ${stack}
      downstreamRefs:
        - ${app.ref}
  cluster:
    type: auto-deploy:AutoDeployer
    properties:
      organization: ${pulumi.organization}
      project: cluster
      stack: ${stack}
      downstreamRefs:
        - ${app.ref}
  # The network underpins everything; updating it updates the database and the cluster.
  network:
    type: auto-deploy:AutoDeployer
    properties:
      organization: ${pulumi.organization}
      project: network
      stack: ${stack}
      downstreamRefs:
        - ${database.ref}
        - ${cluster.ref}
"""

TREE_PROGRAM = """\
name: auto-deploy-demo
runtime: yaml
description: A simple auto-deploy example
variables:
  project: dependency-example
  # TODO: update once https://github.com/pulumi/pulumi-yaml/issues/461 is fixed
  organization: pulumi
resources:
  f:
    type: auto-deploy:AutoDeployer
    properties:
      organization: ${organization}
      project: ${project}
      stack: f
      downstreamRefs: []
  e:
    type: auto-deploy:AutoDeployer
    properties:
      organization: ${organization}
      project: ${project}
      stack: e
      downstreamRefs: []
  d:
    type: auto-deploy:AutoDeployer
    properties:
      organization: ${organization}
      project: ${project}
      stack: d
      downstreamRefs: []
  c:
    type: auto-deploy:AutoDeployer
    properties:
      organization: ${organization}
      project: ${project}
      stack: c
      downstreamRefs: []
  b:
    type: auto-deploy:AutoDeployer
    properties:
      organization: ${organization}
      project: ${project}
      stack: b
      downstreamRefs:
        - ${d.ref}
        - ${e.ref}
        - ${f.ref}
  a:
    type: auto-deploy:AutoDeployer
    properties:
      organization: ${organization}
      project: ${project}
      stack: a
      downstreamRefs:
        - ${b.ref}
        - ${c.ref}
"""

SEEDS = Path("/work/shared/seeds")


def program(text: str) -> dict[str, Any]:
    loaded = yaml.safe_load(text)
    assert isinstance(loaded, dict)
    return loaded


def edges_of(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {edge.key for edge in parse_document(document).edges()}


# --- the document ---------------------------------------------------------------------------------------


def test_a_document_declares_edges_gates_and_per_declaration_or_per_edge_options() -> None:
    declaration = parse_document(
        {
            "stacks": [
                {
                    "project": "network",
                    "stack": "prod",
                    "triggerOn": "outputs-changed",
                    "downstreamRefs": [
                        "database/prod",
                        {"ref": "cluster/prod", "triggerOn": "always", "requireApproval": True},
                    ],
                },
                {"project": "database", "stack": "prod", "requireApproval": True, "downstreamRefs": ["app/prod"]},
                {"project": "app", "stack": "prod", "downstreamRefs": []},
            ]
        }
    )
    by_key = {edge.key: edge for edge in declaration.edges()}
    assert list(by_key) == [
        ("database/prod", "app/prod"),
        ("network/prod", "cluster/prod"),
        ("network/prod", "database/prod"),
    ]
    # the entry's triggerOn applies to its outgoing edges; an edge's own wins
    assert by_key[("network/prod", "database/prod")].trigger_on == "outputs-changed"
    assert by_key[("network/prod", "cluster/prod")].trigger_on == "always"
    assert by_key[("network/prod", "cluster/prod")].require_approval is True
    # an entry's requireApproval is the stack's gate, not its edges'
    assert by_key[("database/prod", "app/prod")].require_approval is False
    assert declaration.gates() == {"database/prod": True}
    edge = by_key[("database/prod", "app/prod")]
    assert (edge.filters, edge.groups, edge.display_name, edge.active) == (("update_succeeded",), (), "app/prod", True)
    assert declaration.stacks() == ["app/prod", "cluster/prod", "database/prod", "network/prod"]


def test_keys_are_matched_case_insensitively_and_null_means_not_given() -> None:
    declaration = parse_document(
        {
            "Stacks": [
                {"PROJECT": "a", "stack": "s", "downstreamrefs": ["b/s"], "triggerOn": None, "requireApproval": None}
            ]
        }
    )
    assert [edge.key for edge in declaration.edges()] == [("a/s", "b/s")]
    assert declaration.gates() == {}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "is an object"),
        ({}, "needs 'stacks'"),
        ({"stacks": {"project": "a"}}, "must be a list"),
        ({"stacks": [], "extra": 1}, "unknown key 'extra'"),
        ({"stacks": ["a/s"]}, "stacks[0]: a stack entry is an object"),
        ({"stacks": [{"stack": "s"}]}, "stacks[0]: 'project' is required"),
        ({"stacks": [{"project": ".a", "stack": "s"}]}, "stacks[0]: invalid project name '.a'"),
        ({"stacks": [{"project": "a", "stack": "s", "downstreamRefs": "b/s"}]}, "stacks[0] (a/s): downstreamRefs must be a list"),
        ({"stacks": [{"project": "a", "stack": "s", "downstreamRefs": ["b"]}]}, "stacks[0] (a/s).downstreamRefs[0]: 'b' is not 'project/stack'"),
        ({"stacks": [{"project": "a", "stack": "s", "downstreamRefs": ["o/b/s"]}]}, "'o/b/s' is not 'project/stack'"),
        ({"stacks": [{"project": "a", "stack": "s", "downstreamRefs": [7]}]}, "got 7"),
        ({"stacks": [{"project": "a", "stack": "s", "downstreamRefs": ["a/s"]}]}, "stacks[0] (a/s).downstreamRefs[0]: a stack cannot trigger itself"),
        ({"stacks": [{"project": "a", "stack": "s", "downstreamRefs": ["b/s", "b/s"]}]}, "downstreamRefs[1]: b/s is listed twice"),
        ({"stacks": [{"project": "a", "stack": "s"}, {"project": "b", "stack": "s"}, {"project": "a", "stack": "s"}]}, "stacks[2] (a/s): the stack is already declared by stacks[0]"),
        ({"stacks": [{"project": "a", "stack": "s", "triggerOn": "sometimes"}]}, "stacks[0] (a/s): triggerOn must be one of always, outputs-changed"),
        ({"stacks": [{"project": "a", "stack": "s", "requireApproval": "yes"}]}, "stacks[0] (a/s): requireApproval must be true or false"),
        ({"stacks": [{"project": "a", "stack": "s", "downstreamRefs": [{"triggerOn": "always"}]}]}, "needs 'ref'"),
        ({"stacks": [{"project": "a", "stack": "s", "downstreamRefs": [{"ref": "b/s", "filters": ["nope"]}]}]}, "downstreamRefs[0] (b/s): unknown webhook filter 'nope'"),
        ({"stacks": [{"project": "a", "stack": "s", "downstreamRefs": [{"ref": "b/s", "groups": ["policies"]}]}]}, "unknown webhook group 'policies'"),
        ({"stacks": [{"project": "a", "stack": "s", "downstreamRefs": [{"ref": "b/s", "color": "red"}]}]}, "unknown key 'color'"),
        ({"stacks": [{"project": "a", "stack": "s", "downstreamRefs": [{"ref": "b/s", "displayName": ""}]}]}, "displayName must be a non-empty string"),
    ],
)  # fmt: skip
def test_invalid_documents_are_refused_naming_the_entry(document: object, message: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_document(document)
    assert message in raised.value.message


def test_the_document_round_trips_without_defaults() -> None:
    document = {
        "stacks": [
            {"project": "app", "stack": "prod", "downstreamRefs": []},
            {
                "project": "network",
                "stack": "prod",
                "triggerOn": "outputs-changed",
                "requireApproval": False,
                "downstreamRefs": [
                    "database/prod",
                    {
                        "ref": "web/prod",
                        "triggerOn": "always",
                        "filters": [],
                        "groups": ["deployments"],
                        "displayName": "web",
                    },
                ],
            },
        ]
    }
    assert to_document(parse_document(document)) == document
    assert to_document(parse_document(to_document(parse_document(document)))) == document


def test_the_declaration_of_current_edges_applies_as_no_change() -> None:
    current = [
        EdgeSpec("net/prod", "db/prod", trigger_on="outputs-changed", webhook="autodeploy-db-prod"),
        EdgeSpec("net/prod", "web/prod", trigger_on="outputs-changed", require_approval=True, webhook="w"),
        EdgeSpec("db/prod", "app/prod", filters=(), display_name="deploy app", webhook="x"),
    ]
    gates = {"net/prod": False, "db/prod": True, "app/prod": False, "web/prod": False, "lonely/prod": True}
    declaration = declaration_of(current, gates)
    document = to_document(declaration)
    assert document["stacks"][3] == {
        "project": "net",
        "stack": "prod",
        "triggerOn": "outputs-changed",
        "requireApproval": False,
        "downstreamRefs": ["db/prod", {"ref": "web/prod", "requireApproval": True}],
    }
    assert {"project": "lonely", "stack": "prod", "requireApproval": True, "downstreamRefs": []} in document["stacks"]
    again = parse_document(document)
    changes = diff(current, again.edges())
    assert not changes.changes_anything and len(changes.unchanged) == 3
    assert gate_changes(gates, again.gates()) == ()


# --- the diff -------------------------------------------------------------------------------------------


def test_diff_creates_updates_deletes_and_keeps_by_edge() -> None:
    current = [
        EdgeSpec("net/prod", "db/prod", webhook="h1"),
        EdgeSpec("net/prod", "old/prod", webhook="h2"),
        EdgeSpec("db/prod", "app/prod", webhook="h3"),
    ]
    desired = [
        EdgeSpec("db/prod", "app/prod", trigger_on="outputs-changed"),
        EdgeSpec("net/prod", "db/prod"),
        EdgeSpec("net/prod", "new/prod"),
    ]
    changes = diff(current, desired)
    assert [edge.key for edge in changes.create] == [("net/prod", "new/prod")]
    assert [(c.before.webhook, c.after.webhook, c.fields) for c in changes.update] == [("h3", "h3", ("triggerOn",))]
    assert [edge.webhook for edge in changes.delete] == ["h2"]
    assert [edge.webhook for edge in changes.unchanged] == ["h1"]
    document = diff_document(changes, {("net/prod", "new/prod"): "autodeploy-new-prod"})
    assert document["create"][0]["webhook"] == "autodeploy-new-prod"
    assert document["update"][0]["changes"] == {"triggerOn": {"from": "always", "to": "outputs-changed"}}
    assert document["delete"][0] == {
        "upstream": "net/prod",
        "downstream": "old/prod",
        "webhook": "h2",
        "triggerOn": "always",
        "requireApproval": False,
        "filters": ["update_succeeded"],
        "groups": [],
        "displayName": "old/prod",
        "active": True,
    }
    assert document["gates"] == []


def test_reordering_entries_and_refs_changes_nothing() -> None:
    entries = [
        {"project": f"p{i}", "stack": "s", "downstreamRefs": [f"p{j}/s" for j in range(i + 1, 8)]} for i in range(8)
    ]
    base = parse_document({"stacks": entries})
    current = [EdgeSpec(e.upstream, e.downstream, webhook=f"h-{e.upstream}-{e.downstream}") for e in base.edges()]
    shuffler = random.Random(7)
    for _ in range(20):
        shuffled = [
            dict(entry, downstreamRefs=shuffler.sample(entry["downstreamRefs"], len(entry["downstreamRefs"])))
            for entry in entries
        ]
        shuffler.shuffle(shuffled)
        changes = diff(current, parse_document({"stacks": shuffled}).edges())
        assert not changes.changes_anything
        assert len(changes.unchanged) == len(current) == 28


def test_filters_and_groups_compare_as_sets() -> None:
    before = EdgeSpec("a/s", "b/s", filters=("update_succeeded", "refresh_succeeded"), webhook="h")
    after = EdgeSpec("a/s", "b/s", filters=("refresh_succeeded", "update_succeeded", "update_succeeded"))
    assert not diff([before], [after]).changes_anything


def test_a_second_webhook_on_one_edge_is_deleted_and_an_inactive_one_reactivated() -> None:
    current = [
        EdgeSpec("a/s", "b/s", active=False, webhook="first"),
        EdgeSpec("a/s", "b/s", webhook="second"),
    ]
    changes = diff(current, [EdgeSpec("a/s", "b/s")])
    assert [(c.after.webhook, c.fields) for c in changes.update] == [("first", ("active",))]
    assert [edge.webhook for edge in changes.delete] == ["second"]


def test_gate_changes_only_for_stacks_the_declaration_gates() -> None:
    current = {"a/s": True, "b/s": False, "c/s": True}
    assert gate_changes(current, {"a/s": True, "b/s": True, "d/s": False}) == (GateChange("b/s", False, True),)
    assert gate_changes(current, {"a/s": False}) == (GateChange("a/s", True, False),)


def test_managed_webhook_names_are_valid_and_unique_per_upstream() -> None:
    assert managed_webhook_name("database/prod", set()) == "autodeploy-database-prod"
    first = managed_webhook_name("a-b/c", set())
    second = managed_webhook_name("a/b-c", {first})
    assert first == "autodeploy-a-b-c" and second != first and second.startswith("autodeploy-a-b-c-")
    long = managed_webhook_name(f"{'p' * 100}/{'s' * 100}", set())
    assert len(long) <= 100
    for name in (first, second, long):
        check_name("webhook", name)
    taken = {first, second}
    for _ in range(6):
        name = managed_webhook_name("a/b-c", taken)
        assert name not in taken and len(name) <= 100
        taken.add(name)


# --- Pulumi YAML programs: the documentation's, exactly as written ----------------------------------------


def test_the_webhook_program_of_the_documentation() -> None:
    imported = import_pulumi_program(program(WEBHOOKS_PROGRAM), organization="org")
    assert imported.problems == ()
    assert (imported.auto_deployers, imported.webhooks) == (0, 2)
    assert imported.document == {
        "stacks": [
            {"project": "database", "stack": "prod", "downstreamRefs": [{"ref": "compute/prod", "displayName": "deploy-compute"}]},
            {"project": "network", "stack": "prod", "downstreamRefs": [{"ref": "database/prod", "displayName": "deploy-database"}]},
        ]
    }  # fmt: skip
    edges = parse_document(imported.document).edges()
    assert all(edge.filters == ("update_succeeded",) and edge.trigger_on == "always" for edge in edges)


def test_the_layered_auto_deployer_program_of_the_documentation() -> None:
    imported = import_pulumi_program(program(LAYERED_PROGRAM), organization="acme")
    assert imported.problems == ()
    assert imported.auto_deployers == 4
    assert imported.document == {
        "stacks": [
            {"project": "app", "stack": "prod", "downstreamRefs": []},
            {"project": "cluster", "stack": "prod", "downstreamRefs": ["app/prod"]},
            {"project": "database", "stack": "prod", "downstreamRefs": ["app/prod"]},
            {"project": "network", "stack": "prod", "downstreamRefs": ["cluster/prod", "database/prod"]},
        ]
    }
    # the AutoDeployer's webhooks: update_succeeded, displayName = the downstream ref
    edge = parse_document(imported.document).edges()[0]
    assert (edge.filters, edge.display_name) == (("update_succeeded",), "app/prod")


def test_the_tree_auto_deployer_program_of_the_documentation() -> None:
    imported = import_pulumi_program(program(TREE_PROGRAM), organization="pulumi")
    assert imported.problems == ()
    assert edges_of(imported.document) == {
        ("dependency-example/a", "dependency-example/b"),
        ("dependency-example/a", "dependency-example/c"),
        ("dependency-example/b", "dependency-example/d"),
        ("dependency-example/b", "dependency-example/e"),
        ("dependency-example/b", "dependency-example/f"),
    }
    assert len(imported.document["stacks"]) == 6  # the leaves are declared too


def test_another_organization_is_a_problem_unless_declared_to_mean_this_one() -> None:
    imported = import_pulumi_program(program(TREE_PROGRAM), organization="acme")
    assert [(p.where, p.code, p.subject) for p in imported.problems] == [
        ("resources f, e, d, c, b, a", "organization", "pulumi")
    ]
    assert "organization 'pulumi' is not 'acme'" in imported.problems[0].message
    assert imported.document == {"stacks": []}
    mapped = import_pulumi_program(program(TREE_PROGRAM), organization="acme", program_organizations=["pulumi"])
    assert mapped.problems == () and len(edges_of(mapped.document)) == 5
    webhooks = import_pulumi_program(program(WEBHOOKS_PROGRAM), organization="acme")
    assert [p.subject for p in webhooks.problems] == ["org"]


@pytest.mark.skipif(not SEEDS.is_dir(), reason="the seed pages are not in this checkout")
def test_the_copies_above_are_the_programs_of_the_seed_pages() -> None:
    blocks = [
        block
        for path in sorted(SEEDS.glob("*.txt"))
        for block in re.findall(r"```yaml\n(.*?)```", path.read_text(), re.S)
    ]
    copies = [program(WEBHOOKS_PROGRAM), program(LAYERED_PROGRAM), program(TREE_PROGRAM)]
    assert len(blocks) == 4  # the webhook program is on both pages
    assert all(program(block) in copies for block in blocks)
    assert all(copy in [program(block) for block in blocks] for copy in copies)


# --- Pulumi YAML programs: what is evaluated, and what is reported ----------------------------------------


def problems_of(text: str, organization: str = "acme") -> list[str]:
    return [str(p) for p in import_pulumi_program(program(text), organization=organization).problems]


def test_variables_config_defaults_functions_and_outputs_are_evaluated() -> None:
    text = """
name: graph
runtime:
  name: yaml
config:
  env:
    type: string
    default: prod
variables:
  suffix: ${env}
  names:
    fn::split: [",", "db,web"]
  dbProject:
    fn::select: [0, "${names}"]
  webRef:
    fn::join: ["/", ["${names[1]}", "${suffix}"]]
  escaped: "$${not.a.reference}"
resources:
  net:
    type: auto-deploy:index:AutoDeployer
    properties:
      organization: ${pulumi.organization}
      project: net-${pulumi.project}
      stack: ${suffix}
      downstreamRefs:
        - ${db.ref}
        - ${webRef}
    options:
      dependsOn: [db]
  db:
    type: auto-deploy:AutoDeployer
    properties:
      organization: acme
      project: ${dbProject}
      stack: ${net.stack}
      downstreamRefs: []
  hook:
    type: pulumiservice:index:Webhook
    properties:
      organizationName: ${net.organization}
      projectName: ${db.project}
      stackName: ${db.stack}
      format: pulumi_deployments
      payloadUrl: ${webRef}
      active: true
      groups: [deployments]
outputs:
  anything: ${escaped}
"""
    imported = import_pulumi_program(program(text), organization="acme")
    assert imported.problems == ()
    assert imported.document == {
        "stacks": [
            {"project": "db", "stack": "prod", "downstreamRefs": [{"ref": "web/prod", "filters": [], "groups": ["deployments"]}]},
            {"project": "net-graph", "stack": "prod", "downstreamRefs": ["db/prod", "web/prod"]},
        ]
    }  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "resources:\n  bucket:\n    type: aws:s3:Bucket\n",
            "resources.bucket: resource type 'aws:s3:Bucket' is not supported",
        ),
        (
            "resources:\n  hook:\n    type: pulumiservice:Webhook\n    properties:\n      organizationName: acme\n"
            "      payloadUrl: https://example.com/hook\n      format: slack\n",
            "resources.hook.properties.format: format 'slack': only deployment webhooks (format pulumi_deployments)",
        ),
        (
            "resources:\n  hook:\n    type: pulumiservice:Webhook\n    properties:\n      organizationName: acme\n"
            "      payloadUrl: https://example.com/hook\n",
            "format raw (the default)",
        ),
        (
            "resources:\n  a:\n    type: auto-deploy:AutoDeployer\n    properties:\n      organization: acme\n"
            "      project: a\n      stack: s\n      downstreamRefs: []\n      color: red\n",
            "resources.a.properties.color: auto-deploy:AutoDeployer has no input 'color'",
        ),
        (
            "resources:\n  a:\n    type: auto-deploy:AutoDeployer\n    properties:\n      organization: acme\n"
            "      project: a\n      stack: ${pulumi.stack}\n      downstreamRefs: []\n",
            "resources.a.properties.stack: ${pulumi.stack} is the stack the program is run in",
        ),
        (
            "variables:\n  who:\n    fn::invoke:\n      function: aws:getCallerIdentity\nresources:\n  a:\n"
            "    type: auto-deploy:AutoDeployer\n    properties:\n      organization: acme\n      project: ${who}\n"
            "      stack: s\n      downstreamRefs: []\n",
            "variables.who: fn::invoke calls a provider function, which only Pulumi can run",
        ),
        (
            "resources:\n  a:\n    type: auto-deploy:AutoDeployer\n    properties:\n      organization: acme\n"
            '      project: a\n      stack: s\n      downstreamRefs: ["${nowhere.ref}"]\n',
            "resources.a.properties.downstreamRefs[0]: ${nowhere.ref}: there is no variable, config value or resource named 'nowhere'",
        ),
        (
            "resources:\n  a:\n    type: auto-deploy:AutoDeployer\n    properties:\n      organization: acme\n"
            '      project: a\n      stack: s\n      downstreamRefs: ["${b}"]\n  b:\n    type: auto-deploy:AutoDeployer\n'
            "    properties:\n      organization: acme\n      project: b\n      stack: s\n      downstreamRefs: []\n",
            "${b} is the resource itself, not a value; use one of its outputs, e.g. ${b.ref}",
        ),
        (
            "resources:\n  a:\n    type: auto-deploy:AutoDeployer\n    properties:\n      organization: acme\n"
            '      project: a\n      stack: s\n      downstreamRefs: "${b.downstreamWebhooks}"\n  b:\n'
            "    type: auto-deploy:AutoDeployer\n    properties:\n      organization: acme\n      project: b\n"
            "      stack: s\n      downstreamRefs: []\n",
            "b.downstreamWebhooks are names Pulumi Cloud gives the webhooks it creates",
        ),
        (
            "config:\n  env:\n    type: string\nresources:\n  a:\n    type: auto-deploy:AutoDeployer\n    properties:\n"
            "      organization: acme\n      project: a\n      stack: ${env}\n      downstreamRefs: []\n",
            "config.env: config value 'env' has no default",
        ),
        (
            "variables:\n  x: ${y}\n  y: ${x}\nresources:\n  a:\n    type: auto-deploy:AutoDeployer\n    properties:\n"
            "      organization: acme\n      project: ${x}\n      stack: s\n      downstreamRefs: []\n",
            "the values refer to each other in a loop",
        ),
        (
            "resources:\n  hook:\n    type: pulumiservice:Webhook\n    properties:\n      organizationName: acme\n"
            "      projectName: a\n      stackName: s\n      format: pulumi_deployments\n      payloadUrl: b/s\n"
            "      active: false\n",
            "resources.hook.properties.active: an inactive deployment webhook is no edge",
        ),
        (
            "resources:\n  hook:\n    type: pulumiservice:Webhook\n    properties:\n      organizationName: acme\n"
            "      projectName: a\n      stackName: s\n      format: pulumi_deployments\n      payloadUrl: b/s\n"
            "      active: true\n      secret: hunter2\n",
            "resources.hook.properties.secret: a deployment webhook posts nothing",
        ),
        (
            "resources:\n  hook:\n    type: pulumiservice:Webhook\n    properties:\n      organizationName: acme\n"
            "      format: pulumi_deployments\n      payloadUrl: b/s\n      active: true\n",
            "a deployment webhook belongs to a stack: set projectName and stackName",
        ),
        (
            "resources:\n  hook:\n    type: pulumiservice:Webhook\n    properties:\n      organizationName: acme\n"
            "      projectName: a\n      stackName: s\n      format: pulumi_deployments\n"
            "      payloadUrl: https://api.example.com/deploy\n      active: true\n",
            "resources.hook.properties.payloadUrl: a deployment webhook's payloadUrl is the stack to deploy",
        ),
        (
            "resources:\n  hook:\n    type: pulumiservice:Webhook\n    properties:\n      organizationName: acme\n"
            "      projectName: a\n      stackName: s\n      format: pulumi_deployments\n      payloadUrl: b/s\n"
            "      active: true\n      filters: [drift_detected]\n",
            "resources.hook.properties.filters: unknown webhook filter 'drift_detected'",
        ),
        (
            "resources:\n  a:\n    type: auto-deploy:AutoDeployer\n    properties:\n      organization: acme\n"
            "      project: a\n      stack: s\n      downstreamRefs: []\n    options:\n      protect: true\n",
            "resources.a.options.protect: a managed webhook is deleted when its edge leaves the declaration",
        ),
        (
            "resources:\n  a:\n    type: auto-deploy:AutoDeployer\n    get:\n      id: x\n    properties:\n"
            "      organization: acme\n      project: a\n      stack: s\n      downstreamRefs: []\n",
            "resources.a.get: 'get' reads an existing resource",
        ),
        (
            "runtime: nodejs\nresources: {}\n",
            "runtime: runtime 'nodejs': only Pulumi YAML programs (runtime: yaml) can be read",
        ),
        (
            "main: infra/\nresources: {}\n",
            "main: the program lives in another directory",
        ),
        (
            "resources:\n  a:\n    type: auto-deploy:AutoDeployer\n    properties:\n      organization: acme\n"
            "      project: a\n      stack: s\n      downstreamRefs: [b/s]\n  hook:\n    type: pulumiservice:Webhook\n"
            "    properties:\n      organizationName: acme\n      projectName: a\n      stackName: s\n"
            "      format: pulumi_deployments\n      payloadUrl: b/s\n      active: true\n",
            "resources.hook.properties: the edge a/s -> b/s is already declared by resources.a.properties.downstreamRefs[0]",
        ),
        (
            "resources:\n  a:\n    type: auto-deploy:AutoDeployer\n    properties:\n      organization: acme\n"
            "      project: a\n      stack: s\n      downstreamRefs: [a/s]\n",
            "a/s would trigger itself",
        ),
        (
            "resources:\n  a:\n    type: auto-deploy:AutoDeployer\n    properties:\n      organization: acme\n"
            '      project: a\n      stack: s\n      downstreamRefs: ["${hook.name}"]\n  hook:\n'
            "    type: pulumiservice:Webhook\n    properties:\n      organizationName: acme\n      projectName: b\n"
            "      stackName: s\n      format: pulumi_deployments\n      payloadUrl: c/s\n      active: true\n",
            "hook.name is chosen by Pulumi Cloud when the webhook is created",
        ),
    ],
)
def test_what_cannot_be_honoured_is_reported(text: str, expected: str) -> None:
    problems = problems_of(text)
    assert any(expected in problem for problem in problems), problems


def test_a_problem_at_its_origin_is_reported_once_and_dependents_are_left_out() -> None:
    text = """
variables:
  org:
    fn::invoke:
      function: pulumiservice:getOrganization
resources:
  a:
    type: auto-deploy:AutoDeployer
    properties:
      organization: ${org}
      project: a
      stack: s
      downstreamRefs: [b/s]
  b:
    type: auto-deploy:AutoDeployer
    properties:
      organization: ${org}
      project: b
      stack: s
      downstreamRefs: []
"""
    imported = import_pulumi_program(program(text), organization="acme")
    assert [p.where for p in imported.problems] == ["variables.org"]
    assert imported.document == {"stacks": []}


def test_only_programs_are_recognised_as_programs() -> None:
    assert is_pulumi_program(program(LAYERED_PROGRAM))
    assert not is_pulumi_program({"stacks": []})
    assert not is_pulumi_program({"stacks": [], "resources": {}})
    assert import_pulumi_program(["not", "a", "map"], organization="acme").problems[0].where == "program"


# --- Pulumi YAML programs: every part is evaluated, used or not -----------------------------------------


def layered_with(**sections: Any) -> dict[str, Any]:
    """The documentation's layered program with sections added (variables are merged into its own)."""
    data = program(LAYERED_PROGRAM)
    variables = sections.pop("variables", {})
    data["variables"] = {**data["variables"], **variables}
    return data | sections


def test_outputs_that_refer_to_what_does_not_exist_are_reported() -> None:
    data = layered_with(outputs={"bogus": "${doesNotExist.ref}"})
    imported = import_pulumi_program(data, organization="acme")
    assert [str(p) for p in imported.problems] == [
        "outputs.bogus: ${doesNotExist.ref}: there is no variable, config value or resource named 'doesNotExist'",
    ]


def test_values_pulumi_knows_only_after_creating_a_resource_are_noted_where_nothing_applied_uses_them() -> None:
    # Exporting an AutoDeployer's webhooks is ordinary in a Pulumi program; nothing here depends on it.
    data = layered_with(
        outputs={"hooks": "${network.downstreamWebhooks}", "unused": "${later}"},
        variables={"later": "${network.downstreamWebhooks}"},
    )
    imported = import_pulumi_program(data, organization="acme")
    assert imported.problems == ()
    assert [str(note) for note in imported.notes] == [
        "variables.later: network.downstreamWebhooks are names Pulumi Cloud gives the webhooks it creates; "
        "they are not known before that: not evaluated, it has no effect here",
        "outputs.hooks: network.downstreamWebhooks are names Pulumi Cloud gives the webhooks it creates; "
        "they are not known before that: not evaluated, it has no effect here",
    ]
    assert imported.document == import_pulumi_program(program(LAYERED_PROGRAM), organization="acme").document


def test_outputs_it_can_evaluate_are_accepted_with_a_note_that_they_have_no_effect() -> None:
    data = layered_with(outputs={"networkRef": "${network.ref}", "stack": "${stack}"})
    imported = import_pulumi_program(data, organization="acme")
    assert imported.problems == ()
    assert [str(note) for note in imported.notes] == [
        "outputs: networkRef, stack have no effect: a declaration applied here makes no stack to export them from"
    ]
    assert imported.document == import_pulumi_program(program(LAYERED_PROGRAM), organization="acme").document


def test_a_variable_nothing_uses_is_evaluated_too() -> None:
    data = layered_with(
        variables={"lookup": {"fn::invoke": {"function": "aws:getCallerIdentity"}}, "name": "${pulumi.organization}"}
    )
    imported = import_pulumi_program(data, organization="acme")
    assert [str(p) for p in imported.problems] == [
        "variables.lookup: fn::invoke calls a provider function, which only Pulumi can run"
    ]


def test_a_config_value_nothing_uses_is_reported_when_it_has_no_default_or_value() -> None:
    data = layered_with(config={"region": {"type": "string"}, "size": {"type": "string", "default": "small"}})
    imported = import_pulumi_program(data, organization="acme")
    assert [p.where for p in imported.problems] == ["config.region"]
    assert "config value 'region' has no default" in imported.problems[0].message


def test_provider_config_has_no_effect_and_is_noted_without_its_value() -> None:
    data = layered_with(
        config={"pulumiservice:accessToken": {"value": "pul-secret"}, "pulumiservice:apiUrl": "https://pulumi.example"}
    )
    imported = import_pulumi_program(data, organization="acme")
    assert imported.problems == ()
    notes = [str(note) for note in imported.notes]
    assert notes == [
        "config.pulumiservice:accessToken: configures the pulumiservice provider, which stackcascade does not use: "
        "the declaration is applied to the cascade server with your cascade token; this value is not read",
        "config.pulumiservice:apiUrl: configures the pulumiservice provider, which stackcascade does not use: "
        "the declaration is applied to the cascade server with your cascade token; this value is not read",
    ]
    assert not any("pul-secret" in note or "pulumi.example" in note for note in notes)


def test_project_keys_that_change_how_pulumi_runs_are_noted_without_their_values() -> None:
    data = layered_with(
        backend={"url": "s3://bucket?access_key=AKIA-hunter2"},
        options={"refresh": "always"},
        plugins={"providers": [{"name": "aws", "path": "/opt/aws"}]},
        packages={"aws": "pulumi/aws"},
        stackConfigDir="config",
        description="the org's cascade graph",
        author="ops",
    )
    imported = import_pulumi_program(data, organization="acme")
    assert imported.problems == ()
    assert sorted(note.where for note in imported.notes) == [
        "backend",
        "options",
        "packages",
        "plugins",
        "stackConfigDir",
    ]
    assert all("hunter2" not in str(note) and "/opt/aws" not in str(note) for note in imported.notes)
    assert imported.document == import_pulumi_program(program(LAYERED_PROGRAM), organization="acme").document


@pytest.mark.parametrize("text", [WEBHOOKS_PROGRAM, LAYERED_PROGRAM, TREE_PROGRAM])
def test_the_documentations_programs_have_no_problems_and_no_notes(text: str) -> None:
    organization = "org" if text is WEBHOOKS_PROGRAM else "pulumi"
    imported = import_pulumi_program(program(text), organization=organization)
    assert (imported.problems, imported.notes) == ((), ())


def test_a_secret_config_value_that_does_not_evaluate_is_reported_without_its_text() -> None:
    program = {
        "name": "infra",
        "runtime": "yaml",
        "config": {"dbPassword": {"type": "string", "secret": True, "default": "hunter2${oops"}},
        "resources": {},
    }
    imported = import_pulumi_program(program, organization="acme")
    [problem] = [p for p in imported.problems if "dbPassword" in str(p)]
    assert "secret" in str(problem) and "hunter2" not in str(problem)
    assert all("hunter2" not in str(p) for p in [*imported.problems, *imported.notes])


def secret_program(*, refs: object = None, active: object = True, **sections: object) -> dict[str, Any]:
    """An AutoDeployer and a deployment webhook with a secret config value that the caller puts to use."""
    return {
        "name": "infra",
        "runtime": "yaml",
        "config": {
            "hookSecret": {"type": "string", "secret": True, "default": "CONFIGSECRET-1"},
            "refSecret": {"type": "string", "secret": True, "default": "db/CONFIGSECRET-2"},
            "listSecret": {"secret": True, "default": ["CONFIGSECRET-3", "app/prod"]},
        },
        "variables": {"fromSecret": "${hookSecret}", "joined": {"fn::join": ["-", ["x", "${fromSecret}"]]}},
        "resources": {
            "up": {
                "type": "auto-deploy:AutoDeployer",
                "properties": {
                    "organization": "acme",
                    "project": "net",
                    "stack": "prod",
                    "downstreamRefs": [] if refs is None else refs,
                },
            },
            "hook": {
                "type": "pulumiservice:Webhook",
                "properties": {
                    "organizationName": "acme",
                    "projectName": "net",
                    "stackName": "prod",
                    "format": "pulumi_deployments",
                    "payloadUrl": "db/prod",
                    "active": active,
                },
            },
        },
        **sections,
    }


def assert_no_secret(imported: Any) -> list[str]:
    """Every problem and note, after checking that none of them, nor the document, holds a secret's text."""
    said = [str(finding) for finding in [*imported.problems, *imported.notes]]
    assert not any("CONFIGSECRET" in text for text in said), said
    assert "CONFIGSECRET" not in repr(imported.document)
    return said


@pytest.mark.parametrize(
    ("variables", "expression", "accessor"),
    [
        ({}, "${hookSecret.nope}", "'nope'"),  # the config value itself
        ({}, "${fromSecret[0]}", "0"),  # through a variable
        ({}, "${joined.nope}", "'nope'"),  # fn::join of it
        ({}, "${listSecret[0].nope}", "'nope'"),  # an item of a secret list
        ({"parts": {"fn::split": ["-", "${joined}"]}}, "${parts[1].nope}", "'nope'"),
        ({"picked": {"fn::select": [0, {"fn::split": ["-", "pre-${hookSecret}"]}]}}, "${picked.x}", "'x'"),
    ],
)
def test_a_reference_into_a_secret_config_value_that_fails_does_not_quote_it(
    variables: dict[str, object], expression: str, accessor: str
) -> None:
    program = secret_program(outputs={"o": expression})
    program["variables"] |= variables
    said = assert_no_secret(import_pulumi_program(program, organization="acme"))
    assert f"outputs.o: {expression}: {accessor} is not in (a secret value, not shown)" in said


SECRET_REFUSED = (
    "is (a secret value, not shown): an Auto Deploy declaration is stored and shown in plain text, so it cannot "
    "use a value derived from a secret config value"
)


def test_a_stack_reference_derived_from_a_secret_is_refused_without_its_text() -> None:
    refs = [
        "${hookSecret}",  # not project/stack: the text was quoted by the check
        "${refSecret}",  # a valid reference: it would have become an edge, in plain text
        "pre-${hookSecret}",
        {"fn::join": ["/", ["db", "${fromSecret}"]]},
        {"fn::select": [1, "${listSecret}"]},
        "app/prod",
    ]
    imported = import_pulumi_program(secret_program(refs=refs), organization="acme")
    said = assert_no_secret(imported)
    assert said == [
        f"resources.up.properties.downstreamRefs[{index}]: the stack reference {SECRET_REFUSED}" for index in range(5)
    ]
    assert imported.document["stacks"] == [
        {"project": "net", "stack": "prod", "downstreamRefs": ["app/prod", {"ref": "db/prod", "filters": []}]}
    ]


@pytest.mark.parametrize("value", ["${hookSecret}", "${refSecret}", "${listSecret}", "${fromSecret}"])
def test_downstream_refs_or_active_that_are_a_secret_are_refused_without_its_text(value: str) -> None:
    imported = import_pulumi_program(secret_program(refs=value, active=value), organization="acme")
    assert assert_no_secret(imported) == [
        f"resources.up.properties.downstreamRefs: downstreamRefs {SECRET_REFUSED}",
        f"resources.hook.properties.active: active {SECRET_REFUSED}",
    ]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("organizationName", "${hookSecret}"),
        ("projectName", "${hookSecret}"),
        ("payloadUrl", "${refSecret}"),
        ("displayName", "deploy ${hookSecret}"),
        ("filters", ["${hookSecret}"]),
        ("groups", "${listSecret}"),
    ],
)
def test_a_webhook_input_derived_from_a_secret_is_refused_without_its_text(name: str, value: object) -> None:
    program = secret_program()
    program["resources"]["hook"]["properties"][name] = value
    said = assert_no_secret(import_pulumi_program(program, organization="acme"))
    assert said == [f"resources.hook.properties.{name}: {name} {SECRET_REFUSED}"]


def test_a_function_of_a_secret_is_secret_and_its_arguments_are_not_shown() -> None:
    variables = {
        "outOfRange": {"fn::select": [9, "${listSecret}"]},
        "notText": {"fn::join": ["-", "${listSecret}", "${hookSecret}"]},
        "joinedRef": {"fn::join": ["/", {"fn::split": ["/", "${refSecret}"]}]},
    }
    program = secret_program(refs=["${joinedRef}"], outputs={"o": "${joinedRef.x}"})
    program["variables"] |= variables
    said = assert_no_secret(import_pulumi_program(program, organization="acme"))
    assert said == [
        f"resources.up.properties.downstreamRefs[0]: the stack reference {SECRET_REFUSED}",
        "variables.outOfRange: fn::select has arguments it cannot use: a list",
        "variables.notText: fn::join has arguments it cannot use: a list",
        "outputs.o: ${joinedRef.x}: 'x' is not in (a secret value, not shown)",
    ]


def test_fn_secret_marks_its_value_secret() -> None:
    program = secret_program(refs=["${marked}"], outputs={"o": "${marked.x}"})
    program["variables"] |= {"marked": {"fn::secret": "app/prod"}, "fine": {"fn::secret": {"fn::join": ["", ["a"]]}}}
    said = [str(problem) for problem in import_pulumi_program(program, organization="acme").problems]
    assert said == [
        f"resources.up.properties.downstreamRefs[0]: the stack reference {SECRET_REFUSED}",
        "outputs.o: ${marked.x}: 'x' is not in (a secret value, not shown)",
    ]


def test_a_function_given_arguments_of_the_wrong_shape_says_so() -> None:
    program = secret_program(refs=["app/prod"])
    program["variables"] |= {"joined": {"fn::join": "a-b"}, "picked": {"fn::select": [True, ["a"]]}}
    said = [str(problem) for problem in import_pulumi_program(program, organization="acme").problems]
    assert said == [
        "variables.joined: fn::join has arguments it cannot use: 'a-b'",
        "variables.picked: fn::select has arguments it cannot use: a list",
    ]


def test_a_secret_that_nothing_misuses_leaves_the_program_as_it_is() -> None:
    program = secret_program(refs=["app/prod"], outputs={"password": "${hookSecret}"})
    program["resources"]["hook"]["properties"]["secret"] = "${hookSecret}"
    imported = import_pulumi_program(program, organization="acme")
    assert assert_no_secret(imported) == [
        "resources.hook.properties.secret: a deployment webhook posts nothing, so a signing secret is not kept",
        "outputs: password has no effect: a declaration applied here makes no stack to export it from",
    ]
