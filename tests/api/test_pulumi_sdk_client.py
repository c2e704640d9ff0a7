"""The published Pulumi Cloud SDK (``pulumi-cloud-sdk``) drives stackcascade over real HTTP.

Every call goes through the SDK's own request building and response parsing, so these tests fail
when a response shape stops parsing into the SDK's models or a request the SDK sends is refused.
The SDK sends every unset field as JSON null and defaults ``inheritSettings`` to false.
"""

from __future__ import annotations

import json
import urllib.error
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx2
import pytest
from pulumi_cloud_sdk import ApiClient, Configuration
from pulumi_cloud_sdk import models as M
from pulumi_cloud_sdk.apis import DeploymentsApi, OrganizationsApi, StacksApi, UsersApi

from tests.support import LiveServer

PROJECT = "network"
STACK = "prod"
REPO = "https://git.example.com/platform/infra.git"
ADMIN_NAME = "admin (CASCADE_ADMIN_TOKEN)"  # the name the server gives the configured admin token
MASK = "[secret]"


class Sdk:
    """One SDK client per token; every API class gets it (or it would talk to api.pulumi.com)."""

    def __init__(self, url: str, token: str) -> None:
        config = Configuration()
        config.host = url
        config.access_token = token
        self.client = ApiClient(config)
        self.orgs = OrganizationsApi(self.client)
        self.stacks = StacksApi(self.client)
        self.users = UsersApi(self.client)
        self.deployments = DeploymentsApi(self.client)

    def last_body(self) -> str:
        raw = self.client.last_response
        assert isinstance(raw, bytes)
        return raw.decode()


@pytest.fixture
def sdk(live_server: LiveServer) -> Sdk:
    return Sdk(live_server.url, live_server.admin_token)


@pytest.fixture
def secret() -> str:
    return f"s3cr3t-{uuid.uuid4().hex}"


@pytest.fixture
def tokens(admin: httpx2.Client) -> Callable[..., str]:
    """Issue an org token through the API with the admin token."""

    def issue(org: str, role: str, name: str | None = None) -> str:
        body: dict[str, Any] = {"org": org, "role": role}
        if name:
            body["name"] = name
        response = admin.post("/api/tokens", json=body)
        assert response.status_code == 201, response.text
        token = response.json()["token"]
        assert isinstance(token, str)
        return token

    return issue


def http_error(call: Callable[[], object]) -> tuple[int, dict[str, Any]]:
    """Run an SDK call that must fail; return the status and the parsed error body (closing the response)."""
    with pytest.raises(urllib.error.HTTPError) as caught:
        call()
    error = caught.value
    try:
        raw = error.read()
    finally:
        error.close()
    return error.code, (json.loads(raw) if raw else {})


def settings_request(secret: str) -> M.DeploymentSettingsRequest:
    return M.DeploymentSettingsRequest(
        source_context=M.SourceContextRequest(
            git=M.SourceContextGitRequest(repo_url=REPO, branch="main", repo_dir="network")
        ),
        operation_context=M.OperationContextRequest(
            pre_run_commands=["make deps"],
            environment_variables={
                "REGION": M.SecretValue(secret="", plaintext="eu-west-1"),
                "API_TOKEN": M.SecretValue(secret=secret),
            },
        ),
    )


def new_stack(sdk: Sdk, org: str, stack: str = STACK, *, secret: str | None = None) -> M.AppStack:
    sdk.orgs.create_stack(org, PROJECT, M.AppCreateStackRequest(stack_name=stack))
    if secret is not None:
        sdk.deployments.patch_deployment_settings(org, PROJECT, stack, settings_request(secret))
    return sdk.stacks.get_stack(org, PROJECT, stack)


def deploy(
    sdk: Sdk, org: str, stack: str = STACK, operation: str = "update", **fields: Any
) -> M.CreateDeploymentResponse:
    request = M.CreateDeploymentRequest(operation=operation, inherit_settings=True, **fields)
    return sdk.deployments.create_api_deployment_handler_v2(org, PROJECT, stack, request)


def env_of(deployment: M.GetDeploymentResponse) -> list[tuple[str, bool, str | None]]:
    return [(v.name, v.secret, v.value) for v in deployment.configuration.environment_variables]


def test_stack_create_exists_get_list_and_delete(sdk: Sdk, org: str) -> None:
    created = sdk.orgs.create_stack(
        org, PROJECT, M.AppCreateStackRequest(stack_name=STACK, tags={"team": "platform", "tier": "1"})
    )
    assert isinstance(created, M.AppCreateStackResponse)
    assert created.messages == []

    assert sdk.orgs.project_exists(org, PROJECT) is None  # 200 with an empty body
    assert sdk.client.last_response == b""
    assert http_error(lambda: sdk.orgs.project_exists(org, "no-such-project"))[0] == 404

    stack = sdk.stacks.get_stack(org, PROJECT, STACK)
    assert isinstance(stack, M.AppStack)
    assert (stack.org_name, stack.project_name, stack.stack_name) == (org, PROJECT, STACK)
    assert stack.tags == {"team": "platform", "tier": "1"}
    assert stack.version == 0
    assert stack.active_update == ""
    assert stack.id

    listed = sdk.users.list_user_stacks(organization=org)
    assert isinstance(listed, M.AppListStacksResponse)
    assert [(s.id, s.org_name, s.project_name, s.stack_name) for s in listed.stacks] == [
        (stack.id, org, PROJECT, STACK)
    ]
    assert listed.stacks[0].links.self_.endswith(f"/{org}/{PROJECT}/{STACK}")
    assert listed.continuation_token is None

    code, body = http_error(lambda: sdk.orgs.create_stack(org, PROJECT, M.AppCreateStackRequest(stack_name=STACK)))
    assert (code, body) == (409, {"code": 409, "message": f"stack {org}/{PROJECT}/{STACK} already exists"})

    assert sdk.stacks.delete_stack(org, PROJECT, STACK) == b""  # 204; the SDK declares no response type
    code, body = http_error(lambda: sdk.stacks.get_stack(org, PROJECT, STACK))
    assert (code, body["message"]) == (404, f"stack {org}/{PROJECT}/{STACK} not found")
    assert http_error(lambda: sdk.orgs.project_exists(org, PROJECT))[0] == 404
    assert sdk.users.list_user_stacks(organization=org).stacks == []


def test_settings_patch_get_replace_and_delete_never_reveal_the_secret(sdk: Sdk, org: str, secret: str) -> None:
    new_stack(sdk, org)
    code, body = http_error(lambda: sdk.deployments.get_deployment_settings(org, PROJECT, STACK))
    assert (code, body["message"]) == (404, f"stack {org}/{PROJECT}/{STACK} has no deployment settings")

    saved = sdk.deployments.patch_deployment_settings(org, PROJECT, STACK, settings_request(secret))
    assert secret not in sdk.last_body()
    assert isinstance(saved, M.DeploymentSettings)
    assert saved.version == 1
    assert saved.source == M.DeploymentSettingsSource.API
    git = saved.source_context.git
    assert (git.repo_url, git.branch, git.repo_dir, git.commit) == (REPO, "main", "network", None)
    assert saved.operation_context.pre_run_commands == ["make deps"]
    env = saved.operation_context.environment_variables
    assert sorted(env) == ["API_TOKEN", "REGION"]
    assert (env["REGION"].secret, env["REGION"].plaintext, env["REGION"].ciphertext) == ("", "eu-west-1", None)
    sealed = env["API_TOKEN"]
    assert (sealed.secret, sealed.plaintext) == (MASK, None)
    assert isinstance(sealed.ciphertext, bytes) and sealed.ciphertext
    assert secret.encode() not in sealed.ciphertext

    read = sdk.deployments.get_deployment_settings(org, PROJECT, STACK)
    assert secret not in sdk.last_body()
    assert read.version == 1
    assert read.source_context.git.repo_url == REPO
    read_env = read.operation_context.environment_variables
    assert read_env["REGION"].plaintext == "eu-west-1"
    assert (read_env["API_TOKEN"].secret, read_env["API_TOKEN"].ciphertext) == (MASK, sealed.ciphertext)

    # Replace: the secret goes back exactly as it was read (mask + ciphertext) and stays sealed as it was.
    replaced = sdk.deployments.replace_deployment_settings(
        org,
        PROJECT,
        STACK,
        M.DeploymentSettingsRequest(
            source_context=M.SourceContextRequest(git=M.SourceContextGitRequest(repo_url=REPO, branch="release")),
            operation_context=M.OperationContextRequest(
                environment_variables={
                    "API_TOKEN": read_env["API_TOKEN"],
                    "STAGE": M.SecretValue(secret="", plaintext="blue"),
                }
            ),
        ),
    )
    assert secret not in sdk.last_body()
    assert replaced.version == 2
    git = replaced.source_context.git
    assert (git.repo_url, git.branch, git.repo_dir) == (REPO, "release", None)
    assert replaced.operation_context.pre_run_commands is None
    env = replaced.operation_context.environment_variables
    assert sorted(env) == ["API_TOKEN", "STAGE"]
    assert (env["API_TOKEN"].secret, env["API_TOKEN"].ciphertext) == (MASK, sealed.ciphertext)
    assert env["STAGE"].plaintext == "blue"

    # Rotating the secret seals the new value; the other variable of the map is kept.
    rotated = sdk.deployments.patch_deployment_settings(
        org,
        PROJECT,
        STACK,
        M.DeploymentSettingsRequest(
            operation_context=M.OperationContextRequest(
                environment_variables={"API_TOKEN": M.SecretValue(secret=secret + "-v2")}
            )
        ),
    )
    assert secret not in sdk.last_body()
    assert rotated.version == 3
    env = rotated.operation_context.environment_variables
    assert env["API_TOKEN"].secret == MASK
    assert env["API_TOKEN"].ciphertext not in (None, sealed.ciphertext)
    assert env["STAGE"].plaintext == "blue"
    assert rotated.source_context.git.branch == "release"

    assert sdk.deployments.delete_deployment_settings(org, PROJECT, STACK) is True
    assert http_error(lambda: sdk.deployments.get_deployment_settings(org, PROJECT, STACK))[0] == 404
    assert http_error(lambda: sdk.deployments.delete_deployment_settings(org, PROJECT, STACK))[0] == 404


def test_deployments_are_created_read_by_id_and_version_and_listed(
    live_server: LiveServer, org: str, secret: str, tokens: Callable[..., str]
) -> None:
    bot = Sdk(live_server.url, tokens(org, "member", "release-bot"))
    new_stack(bot, org, secret=secret)

    first = deploy(bot, org)
    assert isinstance(first, M.CreateDeploymentResponse)
    assert first.version == 1
    assert first.console_url.endswith(f"/{org}/{PROJECT}/{STACK}/deployments/{first.id}")
    second = deploy(
        bot,
        org,
        operation="preview",
        operation_context=M.OperationContextRequest(
            environment_variables={"EXTRA": M.SecretValue(secret="", plaintext="1")}
        ),
    )
    assert second.version == 2
    assert second.id != first.id

    got = bot.deployments.get_deployment(org, PROJECT, STACK, first.id)
    assert isinstance(got, M.GetDeploymentResponse)
    assert secret not in bot.last_body()
    assert (got.id, got.version, got.latest_version) == (first.id, 1, 2)
    assert got.status == M.JobStatus.NotStarted
    assert got.pulumi_operation == M.PulumiOperation.Update
    assert got.initiator == "api"
    assert (got.requested_by.name, got.requested_by.github_login) == ("release-bot", "release-bot")
    assert datetime.fromisoformat(got.created) == datetime.fromisoformat(got.modified)
    assert [(job.status, job.steps, job.started) for job in got.jobs] == [(M.JobStatus.NotStarted, [], None)]
    source = got.configuration.source.git
    assert (source.repo_url, source.branch, source.repo_dir, source.commit) == (REPO, "main", "network", None)
    assert env_of(got) == [("API_TOKEN", True, None), ("REGION", False, "eu-west-1")]  # sorted by name

    by_version = bot.deployments.get_deployment_version(org, PROJECT, STACK, "1")
    assert (by_version.id, by_version.version, by_version.pulumi_operation) == (first.id, 1, M.PulumiOperation.Update)
    preview = bot.deployments.get_deployment_version(org, PROJECT, STACK, "2")
    assert (preview.id, preview.pulumi_operation, preview.latest_version) == (second.id, M.PulumiOperation.Preview, 2)
    assert env_of(preview) == [("API_TOKEN", True, None), ("EXTRA", False, "1"), ("REGION", False, "eu-west-1")]
    code, body = http_error(lambda: bot.deployments.get_deployment_version(org, PROJECT, STACK, "3"))
    assert (code, body["message"]) == (404, f"stack {org}/{PROJECT}/{STACK} has no deployment version 3")

    page1 = bot.deployments.list_stack_deployments_handler_v2(org, PROJECT, STACK, page=1, page_size=1, asc=True)
    page2 = bot.deployments.list_stack_deployments_handler_v2(org, PROJECT, STACK, page=2, page_size=1, asc=True)
    assert isinstance(page1, M.ListDeploymentResponseV2)
    assert (page1.total, page1.items_per_page, page2.total, page2.items_per_page) == (2, 1, 2, 1)
    assert [(d.id, d.version) for d in page1.deployments + page2.deployments] == [(first.id, 1), (second.id, 2)]
    snapshot = page1.deployments[0]
    assert (snapshot.project_name, snapshot.stack_name, snapshot.paused) == (PROJECT, STACK, False)
    assert (snapshot.status, snapshot.pulumi_operation, snapshot.updates) == (
        M.JobStatus.NotStarted,
        M.PulumiOperation.Update,
        [],
    )
    assert snapshot.requested_by.name == "release-bot"
    newest_first = bot.deployments.list_stack_deployments_handler_v2(org, PROJECT, STACK, page=1, page_size=10)
    assert [d.version for d in newest_first.deployments] == [2, 1]
    assert newest_first.items_per_page == 10

    new_stack(bot, org, "staging", secret=secret)
    other = deploy(bot, org, "staging", operation="refresh")
    in_org = bot.deployments.list_org_deployments(org, asc=True, page=1, page_size=10)
    assert in_org.total == 3
    assert [(d.id, d.stack_name, d.version) for d in in_org.deployments] == [
        (first.id, STACK, 1),
        (second.id, STACK, 2),
        (other.id, "staging", 1),
    ]

    stack = bot.stacks.get_stack(org, PROJECT, STACK)
    assert (stack.version, stack.active_update) == (2, second.id)


def test_pause_and_resume_show_in_stack_and_org_metadata(sdk: Sdk, admin: httpx2.Client, org: str, secret: str) -> None:
    new_stack(sdk, org, secret=secret)
    deploy(sdk, org)
    assert admin.patch(f"/api/orgs/{org}/settings", json={"concurrency": 7}).status_code == 200

    def stack_flags() -> tuple[bool, bool, bool]:
        meta = sdk.deployments.stack_deployments_metadata(org, PROJECT, STACK)
        assert isinstance(meta, M.StackDeploymentsMetadataResponse)
        assert meta.has_schedules is False
        return meta.paused, meta.stack_paused, meta.organization_paused

    def org_meta() -> M.OrgDeploymentsMetadataResponse:
        meta = sdk.deployments.org_deployments_metadata(org)
        assert isinstance(meta, M.OrgDeploymentsMetadataResponse)
        return meta

    meta = org_meta()
    assert (meta.paused, meta.concurrency) == (False, 7)
    counts = meta.deployment_counts
    assert (counts.not_started, counts.accepted, counts.running, counts.failed, counts.succeeded, counts.skipped) == (
        1,
        0,
        0,
        0,
        0,
        0,
    )
    assert counts.total == 1
    assert stack_flags() == (False, False, False)

    sdk.deployments.pause_stack_deployments(org, PROJECT, STACK)
    assert stack_flags() == (True, True, False)
    assert org_meta().paused is False
    listed = sdk.deployments.list_stack_deployments_handler_v2(org, PROJECT, STACK)
    assert [d.paused for d in listed.deployments] == [True]

    sdk.deployments.pause_org_deployments(org)
    assert org_meta().paused is True
    assert stack_flags() == (True, True, True)

    sdk.deployments.resume_stack_deployments(org, PROJECT, STACK)
    assert stack_flags() == (True, False, True)

    sdk.deployments.resume_org_deployments(org)
    assert org_meta().paused is False
    assert stack_flags() == (False, False, False)


def test_cancelling_a_queued_deployment_skips_it_then_settings_and_stack_are_deleted(
    sdk: Sdk, org: str, secret: str
) -> None:
    new_stack(sdk, org, secret=secret)
    created = deploy(sdk, org)

    raw = sdk.deployments.cancel_deployment(org, PROJECT, STACK, created.id)  # the SDK declares no response type
    assert json.loads(raw) == {
        "id": created.id,
        "status": "skipped",
        "reason": f"cancelled by {ADMIN_NAME}",
        "cancelRequested": False,
    }
    got = sdk.deployments.get_deployment(org, PROJECT, STACK, created.id)
    assert got.status == M.JobStatus.Skipped
    assert [job.status for job in got.jobs] == [M.JobStatus.Skipped]
    counts = sdk.deployments.org_deployments_metadata(org).deployment_counts
    assert (counts.not_started, counts.skipped, counts.total) == (0, 1, 1)
    code, body = http_error(lambda: sdk.deployments.cancel_deployment(org, PROJECT, STACK, created.id))
    assert (code, body["message"]) == (409, f"deployment {created.id} already finished (skipped); nothing to cancel")

    assert sdk.deployments.delete_deployment_settings(org, PROJECT, STACK) is True
    assert http_error(lambda: sdk.deployments.get_deployment_settings(org, PROJECT, STACK))[0] == 404
    sdk.stacks.delete_stack(org, PROJECT, STACK)
    assert http_error(lambda: sdk.stacks.get_stack(org, PROJECT, STACK))[0] == 404
    assert http_error(lambda: sdk.deployments.get_deployment(org, PROJECT, STACK, created.id))[0] == 404
    gone = sdk.deployments.list_org_deployments(org)
    assert (gone.total, gone.deployments) == (0, [])


def test_the_sdk_default_does_not_inherit_saved_settings(sdk: Sdk, org: str, secret: str) -> None:
    new_stack(sdk, org, secret=secret)
    request = M.CreateDeploymentRequest(operation="update")  # inherit_settings defaults to False in the SDK
    code, body = http_error(lambda: sdk.deployments.create_api_deployment_handler_v2(org, PROJECT, STACK, request))
    assert code == 400
    assert body["message"] == (
        f"no source for stack {org}/{PROJECT}/{STACK}: inheritSettings is false, or give sourceContext in the request"
    )

    own_source = M.CreateDeploymentRequest(
        operation="destroy",
        source_context=M.SourceContextRequest(git=M.SourceContextGitRequest(repo_url=REPO, commit="0a1b2c3")),
    )
    created = sdk.deployments.create_api_deployment_handler_v2(org, PROJECT, STACK, own_source)
    got = sdk.deployments.get_deployment(org, PROJECT, STACK, created.id)
    assert got.pulumi_operation == M.PulumiOperation.Destroy
    git = got.configuration.source.git
    assert (git.repo_url, git.commit, git.branch) == (REPO, "0a1b2c3", None)
    assert env_of(got) == []  # nothing inherited


def test_a_viewer_may_read_but_not_write_and_other_orgs_are_invisible(
    live_server: LiveServer, sdk: Sdk, org: str, secret: str, tokens: Callable[..., str]
) -> None:
    new_stack(sdk, org, secret=secret)
    created = deploy(sdk, org)

    viewer = Sdk(live_server.url, tokens(org, "viewer"))
    assert viewer.stacks.get_stack(org, PROJECT, STACK).stack_name == STACK
    assert viewer.deployments.get_deployment(org, PROJECT, STACK, created.id).id == created.id
    settings = viewer.deployments.get_deployment_settings(org, PROJECT, STACK)
    assert settings.operation_context.environment_variables["API_TOKEN"].secret == MASK
    assert secret not in viewer.last_body()

    forbidden = f"role viewer in organization {org!r} may not do this: needs member"
    writes: list[Callable[[], object]] = [
        lambda: viewer.orgs.create_stack(org, PROJECT, M.AppCreateStackRequest(stack_name="dev")),
        lambda: viewer.deployments.patch_deployment_settings(org, PROJECT, STACK, settings_request("x")),
        lambda: deploy(viewer, org),
        lambda: viewer.deployments.cancel_deployment(org, PROJECT, STACK, created.id),
        lambda: viewer.stacks.delete_stack(org, PROJECT, STACK),
    ]
    for write in writes:
        assert http_error(write) == (403, {"code": 403, "message": forbidden})
    code, body = http_error(lambda: viewer.deployments.pause_org_deployments(org))
    assert (code, body["message"]) == (403, f"role viewer in organization {org!r} may not do this: needs admin")

    outsider = Sdk(live_server.url, tokens(f"{org}-other", "admin"))
    assert http_error(lambda: outsider.stacks.get_stack(org, PROJECT, STACK)) == (
        404,
        {"code": 404, "message": f"stack {org}/{PROJECT}/{STACK} not found"},
    )
    assert http_error(lambda: outsider.deployments.get_deployment(org, PROJECT, STACK, created.id))[0] == 404
    assert http_error(lambda: outsider.deployments.get_deployment_settings(org, PROJECT, STACK))[0] == 404
    assert http_error(lambda: deploy(outsider, org))[0] == 404
    assert http_error(lambda: outsider.users.list_user_stacks(organization=org))[0] == 404
    assert http_error(lambda: outsider.orgs.project_exists(org, PROJECT))[0] == 404
    assert outsider.users.list_user_stacks().stacks == []  # its own org has no stacks; ours are not listed

    assert sdk.stacks.get_stack(org, PROJECT, STACK).version == 1  # nothing above changed the stack


# Known incompatibility: the SDK serialises every unset field as JSON null, and the server treats a
# nested null in a settings patch (and in a create-deployment override) as "delete this key"
# (RFC 7386). So an SDK patch that sets one field deletes every sibling it did not set.
NULL_MEANS_DELETE = (
    "server applies nested nulls as merge-patch deletions, but the Pulumi SDK sends every unset field as null"
)


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=NULL_MEANS_DELETE)
def test_a_partial_sdk_settings_patch_keeps_the_fields_it_did_not_set(sdk: Sdk, org: str, secret: str) -> None:
    new_stack(sdk, org, secret=secret)
    patched = sdk.deployments.patch_deployment_settings(
        org,
        PROJECT,
        STACK,
        M.DeploymentSettingsRequest(
            source_context=M.SourceContextRequest(git=M.SourceContextGitRequest(branch="release")),
            operation_context=M.OperationContextRequest(options=M.OperationContextOptionsRequest(shell="bash")),
        ),
    )
    assert patched.source_context.git.branch == "release"
    assert patched.source_context.git.repo_url == REPO
    assert patched.source_context.git.repo_dir == "network"
    assert patched.operation_context.pre_run_commands == ["make deps"]
    assert sorted(patched.operation_context.environment_variables or {}) == ["API_TOKEN", "REGION"]


def test_an_sdk_deployment_of_another_branch_keeps_the_saved_repository(sdk: Sdk, org: str, secret: str) -> None:
    new_stack(sdk, org, secret=secret)
    other_branch = M.SourceContextRequest(git=M.SourceContextGitRequest(branch="feature/x"))
    try:
        created = deploy(sdk, org, source_context=other_branch)
    except urllib.error.HTTPError as error:
        try:
            answer = error.read().decode()
        finally:
            error.close()
        raise AssertionError(f"create deployment answered {error.code}: {answer}") from None
    git = sdk.deployments.get_deployment(org, PROJECT, STACK, created.id).configuration.source.git
    assert (git.repo_url, git.branch, git.repo_dir) == (REPO, "feature/x", "network")
