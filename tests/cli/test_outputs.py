"""``cascade outputs``: a stack's outputs for people and for scripts, also from inside a deployment."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.cli.cli_support import Cascade, failed, ok, rows
from tests.e2e.helpers import SECRET, cascade_yaml, deploy, git_repo, wait_for
from tests.support import LiveServer

CASCADE = Path(sys.executable).parent / "cascade"
OUTPUTS = {
    "endpoint": "https://net.example",
    "port": 5432,
    "tags": ["a", "b"],
    "nested": {"k": "v w"},
    "markup": "[bold]x[/bold]",
}
# The project writes $PLAIN (JSON) plus a secret output "password" holding $API_KEY (a secret setting).
WRITE_OUTPUTS = """python3 -c 'import json, os; e = os.environ; d = json.loads(e["PLAIN"]); d["password"] = {"secret": e["API_KEY"]}; json.dump(d, open(e["CASCADE_OUTPUTS"], "w"))'"""


@pytest.fixture
def cascade(pool_server: LiveServer, config_home: Path) -> Cascade:
    return Cascade(pool_server)


def admin_client(server: LiveServer) -> httpx2.Client:
    return httpx2.Client(base_url=server.url, headers={"Authorization": f"token {server.admin_token}"}, timeout=30)


@pytest.fixture
def api(pool_server: LiveServer) -> Iterator[httpx2.Client]:
    with admin_client(pool_server) as client:
        yield client


def new_stack(api: httpx2.Client, stack: str, repo_url: str, env: dict[str, object] | None = None) -> str:
    org, project, name = stack.split("/")
    assert api.post(f"/api/stacks/{org}/{project}", json={"stackName": name}).status_code == 200
    settings: dict[str, object] = {"sourceContext": {"git": {"repoUrl": repo_url, "branch": "main"}}}
    if env:
        settings["operationContext"] = {"environmentVariables": env}
    assert api.post(f"/api/stacks/{stack}/deployments/settings", json=settings).status_code == 200
    return stack


def run_to_success(api: httpx2.Client, stack: str) -> dict[str, object]:
    finished = wait_for(api, stack, deploy(api, stack))
    assert finished["status"] == "succeeded", finished
    return finished


@pytest.fixture(scope="module")
def net(pool_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """``<org>/net/prod``, deployed once per server: plain outputs of every JSON kind and a secret one."""
    org = f"org-{uuid.uuid4().hex[:10]}"
    repo = git_repo(tmp_path_factory.mktemp("net"), {"Cascade.yaml": cascade_yaml(update=WRITE_OUTPUTS)})
    env = {"PLAIN": json.dumps(OUTPUTS), "API_KEY": {"secret": SECRET}}
    with admin_client(pool_server) as api:
        stack = new_stack(api, f"{org}/net/prod", repo, env)
        run_to_success(api, stack)
    return stack


def test_outputs_table_marks_and_masks_secrets(cascade: Cascade, net: str) -> None:
    result = ok(cascade.as_admin("outputs", net))
    assert SECRET not in result.output
    table = {row[0]: row[1:] for row in rows(result)[2:]}  # after the header and its rule
    assert table == {
        "endpoint": ["https://net.example"],
        "markup": ["[bold]x[/bold]"],  # values are text, not Rich markup
        "nested": ['{"k":"v', 'w"}'],
        "password": ["[secret]", "secret"],
        "port": ["5432"],
        "tags": ['["a","b"]'],
    }
    assert rows(result)[0] == ["NAME", "VALUE", "SECRET"]

    revealed = {row[0]: row[1:] for row in rows(ok(cascade.as_admin("outputs", net, "--show-secrets")))[2:]}
    assert revealed["password"] == [SECRET, "secret"]


@pytest.mark.parametrize(
    ("key", "printed"),
    [
        ("endpoint", "https://net.example"),
        ("port", "5432"),
        ("tags", '["a","b"]'),
        ("nested", '{"k":"v w"}'),
        ("markup", "[bold]x[/bold]"),
    ],
)
def test_one_key_prints_its_raw_value(cascade: Cascade, net: str, key: str, printed: str) -> None:
    result = ok(cascade.as_admin("outputs", net, key))
    assert result.stdout == printed + "\n"
    assert result.stderr == ""
    as_json = ok(cascade.as_admin("outputs", net, key, "--json")).stdout
    assert json.loads(as_json) == OUTPUTS[key]


def test_json_is_the_api_answer(cascade: Cascade, net: str, api: httpx2.Client) -> None:
    printed = json.loads(ok(cascade.as_admin("outputs", net, "--json")).stdout)
    assert printed == api.get(f"/api/stacks/{net}/outputs").json()
    assert printed == {"outputs": {**OUTPUTS, "password": "[secret]"}, "secretOutputs": ["password"]}
    revealed = json.loads(ok(cascade.as_admin("outputs", net, "--json", "--show-secrets")).stdout)
    assert revealed["outputs"]["password"] == SECRET


def test_a_secret_key_needs_show_secrets(cascade: Cascade, net: str) -> None:
    message = failed(cascade.as_admin("outputs", net, "password"), "'password'", "secret", "--show-secrets")
    assert SECRET not in message and "[secret]" not in message
    assert ok(cascade.as_admin("outputs", net, "password", "--show-secrets")).stdout == SECRET + "\n"


def test_an_unknown_key_names_the_ones_there_are(cascade: Cascade, net: str) -> None:
    failed(
        cascade.as_admin("outputs", net, "endpont"),
        f"{net} has no output 'endpont'",
        "endpoint, markup, nested, password, port, tags",
    )


def test_a_viewer_reads_outputs_but_not_secrets(cascade: Cascade, net: str) -> None:
    org = net.split("/")[0]
    viewer = ok(cascade.as_admin("token", "create", "--org", org, "--role", "viewer")).stdout.strip()
    assert ok(cascade.as_token(viewer, "outputs", net, "endpoint")).stdout == "https://net.example\n"
    failed(cascade.as_token(viewer, "outputs", net, "--show-secrets"), "may not see secret outputs", "(403)")
    outsider = ok(cascade.as_admin("token", "create", "--org", "someone-else", "--role", "admin")).stdout.strip()
    failed(cascade.as_token(outsider, "outputs", net), "(404)")


def test_stack_references_and_what_they_need(cascade: Cascade, net: str, config_home: Path) -> None:
    org, project, stack = net.split("/")
    server, token = cascade.server.url, cascade.server.admin_token
    short = f"{project}/{stack}"
    assert ok(cascade.as_admin("outputs", short, "endpoint", "--org", org)).stdout == "https://net.example\n"
    failed(cascade.as_admin("outputs", short, "endpoint"), "has no organization")
    # A full reference with --server and --token reads no login file, not even a broken one.
    (config_home / "stackcascade").mkdir(parents=True)
    (config_home / "stackcascade" / "credentials.json").write_text("not json")
    result = cascade.run("outputs", net, "endpoint", "--server", server, "--token", token)
    assert ok(result).stdout == "https://net.example\n"


def test_a_stack_without_outputs(cascade: Cascade, api: httpx2.Client, org: str) -> None:
    ok(cascade.as_admin("stack", "create", f"{org}/net/dev"))
    assert ok(cascade.as_admin("outputs", f"{org}/net/dev")).stdout.strip() == f"{org}/net/dev has no outputs."
    failed(cascade.as_admin("outputs", f"{org}/net/dev", "endpoint"), "has no output 'endpoint'", "its outputs: none")
    failed(cascade.as_admin("outputs", f"{org}/net/nope"), "(404)")


def test_a_deployment_reads_another_stacks_outputs_with_its_own_token(
    api: httpx2.Client, net: str, tmp_path: Path, pool_server: LiveServer
) -> None:
    """The real executable, run by a deployment with nothing but CASCADE_API_URL, CASCADE_TOKEN and CASCADE_ORG."""
    org = net.split("/")[0]
    other = new_stack(api, f"org-{uuid.uuid4().hex[:10]}/net/prod", "file:///unused")  # another org's stack
    only_identity = (
        'env -i CASCADE_API_URL="$CASCADE_API_URL" CASCADE_TOKEN="$CASCADE_TOKEN" CASCADE_ORG="$CASCADE_ORG"'
    )
    no_org = 'env -i CASCADE_API_URL="$CASCADE_API_URL" CASCADE_TOKEN="$CASCADE_TOKEN"'
    update = f"""
test "$CASCADE_API_URL" = "{pool_server.url}" || exit 9
endpoint=$({only_identity} {CASCADE} outputs net/prod endpoint) || exit 10
port=$({no_org} {CASCADE} outputs {net} port) || exit 11
password=$({only_identity} {CASCADE} outputs net/prod password --show-secrets) || exit 12
other_err=$({only_identity} {CASCADE} outputs {other} endpoint 2>&1 >/dev/null)
other_org=$?
export endpoint port password other_err other_org
python3 -c 'import json, os; e = os.environ; json.dump({{"upstream": e["endpoint"], "port": json.loads(e["port"]), "password": {{"secret": e["password"]}}, "otherOrgExit": int(e["other_org"]), "otherOrgError": e["other_err"]}}, open(e["CASCADE_OUTPUTS"], "w"))'
"""
    repo = git_repo(tmp_path / "app", {"Cascade.yaml": cascade_yaml(update=update)})
    app = new_stack(api, f"{org}/app/prod", repo)
    run_to_success(api, app)
    outputs = api.get(f"/api/stacks/{app}/outputs", params={"showSecrets": "true"}).json()
    assert outputs["outputs"] == {
        "upstream": "https://net.example",
        "port": 5432,
        "password": SECRET,
        # the deployment token reads its own org's stacks only
        "otherOrgExit": 1,
        "otherOrgError": f"error: stack {other} not found (404)",
    }
    assert outputs["secretOutputs"] == ["password"]
