"""Pydantic models that document the API in the OpenAPI document.

Requests are parsed by the domain (case-insensitive keys, merge-patch nulls), so these models
describe shapes; they are not the validators.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["not-started", "accepted", "running", "failed", "succeeded", "skipped"]
OperationName = Literal["update", "preview", "refresh", "destroy"]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorResponse(_Doc):
    code: int
    message: str


class CreateStackRequest(_Doc):
    stackName: str = Field(description="1-100 of [A-Za-z0-9_.-], not starting with '.'")
    tags: dict[str, str] | None = None


class CreateStackResponse(_Doc):
    messages: list[dict[str, Any]] = []


class AppStack(_Doc):
    id: str
    orgName: str
    projectName: str
    stackName: str
    activeUpdate: str
    tags: dict[str, str] = {}
    version: int


class StackLinks(_Doc):
    self: str


class StackSummary(_Doc):
    id: str
    orgName: str
    projectName: str
    stackName: str
    links: StackLinks | None = None


class ListStacksResponse(_Doc):
    stacks: list[StackSummary]
    continuationToken: str | None = None


class SecretValue(_Doc):
    secret: str = Field(description="the value to seal; responses show '[secret]' or '' for plain values")
    ciphertext: str | None = Field(None, description="base64; send back unchanged to keep a sealed value")
    plaintext: str | None = None


class BasicAuth(_Doc):
    userName: SecretValue
    password: SecretValue


class SSHAuth(_Doc):
    sshPrivateKey: SecretValue
    password: SecretValue | None = None


class GitAuth(_Doc):
    accessToken: SecretValue | None = None
    basicAuth: BasicAuth | None = None
    sshAuth: SSHAuth | None = None


class SourceContextGit(_Doc):
    repoUrl: str | None = Field(None, description="also accepted as repoURL")
    branch: str | None = None
    commit: str | None = None
    repoDir: str | None = None
    gitAuth: GitAuth | None = None


class SourceContext(_Doc):
    git: SourceContextGit | None = None


class OperationOptions(_Doc):
    shell: str | None = None
    skipIntermediateDeployments: bool | None = None
    skipInstallDependencies: bool | None = None
    timeout: int | None = Field(None, description="seconds (stackcascade extension; default 7200)")


class OperationContext(_Doc):
    preRunCommands: list[str] | None = None
    environmentVariables: dict[str, SecretValue | str] | None = None
    options: OperationOptions | None = None


class DeploymentSettingsRequest(_Doc):
    tag: str | None = None
    agentPoolID: str | None = None
    sourceContext: SourceContext | None = None
    operationContext: OperationContext | None = None
    executorContext: dict[str, Any] | None = None
    cacheOptions: dict[str, Any] | None = None


class DeploymentSettings(DeploymentSettingsRequest):
    version: int
    source: str = "api"


class CreateDeploymentRequest(DeploymentSettingsRequest):
    operation: OperationName
    inheritSettings: bool | None = Field(None, description="default true: merge this request over the saved settings")


class CreateDeploymentResponse(_Doc):
    id: str
    consoleUrl: str
    version: int


class UserInfo(_Doc):
    name: str
    githubLogin: str
    avatarUrl: str


class StepRun(_Doc):
    name: str
    status: Literal["not-started", "running", "failed", "succeeded"]
    started: str | None = None
    lastUpdated: str | None = None


class DeploymentJob(_Doc):
    status: Status
    steps: list[StepRun]
    started: str | None = None
    lastUpdated: str | None = None


class EnvironmentVariable(_Doc):
    name: str
    secret: bool
    value: str | None = None


class DeploymentConfiguration(_Doc):
    environmentVariables: list[EnvironmentVariable]
    source: dict[str, Any] | None = None


class _DeploymentBase(_Doc):
    id: str
    created: str
    modified: str
    status: Status
    version: int
    requestedBy: UserInfo
    pulumiOperation: OperationName
    initiator: str
    jobs: list[DeploymentJob]
    orgName: str
    projectName: str
    stackName: str
    reason: str | None = Field(None, description="why it failed or was skipped")
    cascadeId: str | None = None
    triggeredBy: str | None = Field(
        None, description="the upstream deployment whose deployment webhook or cascade queued this one"
    )
    consoleUrl: str


class GetDeploymentResponse(_DeploymentBase):
    latestVersion: int
    configuration: DeploymentConfiguration


class ListDeploymentSnapshot(_DeploymentBase):
    updates: list[dict[str, Any]]
    paused: bool


class ListDeploymentResponseV2(_Doc):
    deployments: list[ListDeploymentSnapshot]
    itemsPerPage: int
    total: int


class DeploymentCounts(_Doc):
    notStarted: int
    accepted: int
    running: int
    failed: int
    succeeded: int
    skipped: int
    total: int


class StackDeploymentsMetadata(_Doc):
    paused: bool
    stackPaused: bool
    organizationPaused: bool
    hasSchedules: bool
    concurrency: int
    deploymentCounts: DeploymentCounts


class OrgDeploymentsMetadata(_Doc):
    paused: bool
    concurrency: int
    cascadeMode: Literal["coalesced", "per-edge"]
    deploymentCounts: DeploymentCounts


class CancelResponse(_Doc):
    id: str
    status: Status
    reason: str | None = None


class OrgSettingsRequest(_Doc):
    concurrency: int | None = Field(None, description="how many deployments of the org may run at once")
    cascadeMode: Literal["coalesced", "per-edge"] | None = Field(
        None,
        description="coalesced (default): one change deploys each dependent stack once, after all its upstreams; "
        "per-edge: every fired deployment webhook deploys its target at once, as Pulumi does",
    )


class TokenCreateRequest(_Doc):
    org: str | None = Field(None, description="omit for an admin token")
    role: Literal["admin", "member", "viewer"] | None = None
    name: str | None = None
    runner: bool | None = Field(None, description="a runner token: can only use the runner protocol")


class TokenInfo(_Doc):
    id: str
    name: str
    kind: Literal["admin", "org", "runner"]
    org: str | None = None
    role: str | None = None
    created: float
    expires: float | None = None


class TokenCreated(TokenInfo):
    token: str = Field(description="shown once; only its hash is stored")


class TokenList(_Doc):
    tokens: list[TokenInfo]


class LogLine(_Doc):
    header: str | None = Field(None, description="the step's name (streaming mode)")
    timestamp: str
    line: str


class DeploymentLogs(_Doc):
    type_: Literal["DeploymentLogs", "DeploymentLogsStep"] = Field(alias="__type")
    lines: list[LogLine]
    nextToken: str | None = Field(
        None, description="streaming mode: absent once the deployment ended and every line was read"
    )
    nextOffset: int | None = Field(None, description="step mode")


class StackOutputs(_Doc):
    outputs: dict[str, Any] = Field(description="secret values show as '[secret]' unless showSecrets=true")
    secretOutputs: list[str]


WebhookFormatName = Literal["raw", "slack", "ms_teams", "pulumi_deployments"]


class Webhook(_Doc):
    organizationName: str | None = Field(None, description="must match the path when given")
    projectName: str | None = Field(None, description="stack webhooks: must match the path when given")
    stackName: str | None = Field(None, description="stack webhooks: must match the path when given")
    name: str | None = Field(None, description="unique in its stack or org; generated when absent")
    displayName: str | None = Field(None, description="defaults to the name")
    payloadUrl: str | None = Field(
        None, description="http(s) URL; for format pulumi_deployments the downstream stack as 'project/stack'"
    )
    secret: str | None = Field(None, description="HMAC-SHA256 key for Pulumi-Webhook-Signature; '' removes it")
    active: bool | None = Field(None, description="default true; inactive webhooks get nothing")
    format: WebhookFormatName | None = Field(None, description="default raw")
    filters: list[str] | None = Field(None, description="event names; empty filters and groups = all events")
    groups: list[Literal["stacks", "deployments"]] | None = None
    triggerOn: Literal["always", "outputs-changed"] | None = Field(
        None, description="extension, deployment webhooks: fire only when the upstream's outputs changed"
    )
    requireApproval: bool | None = Field(
        None, description="extension, deployment webhooks: the downstream waits for an approval in a cascade"
    )


class WebhookResponse(_Doc):
    organizationName: str
    projectName: str | None = None
    stackName: str | None = None
    name: str
    displayName: str
    payloadUrl: str
    active: bool
    format: WebhookFormatName
    filters: list[str]
    groups: list[str]
    hasSecret: bool = Field(description="the secret itself is never returned")
    secretCiphertext: str = Field(description="always empty: the ciphertext stays on the server")
    triggerOn: str | None = Field(None, description="extension: deployment webhooks only")
    requireApproval: bool | None = Field(None, description="extension: deployment webhooks only")
    managed: bool | None = Field(
        None, description="extension, deployment webhooks: owned by the org's Auto Deploy declaration"
    )


class WebhookDelivery(_Doc):
    id: str = Field(description="this attempt's id (redeliver accepts it, or deliveryId)")
    kind: str = Field(description="the Pulumi-Webhook-Kind header")
    payload: str = Field(description="the exact body sent")
    timestamp: int = Field(description="Unix epoch seconds")
    duration: int = Field(description="milliseconds")
    requestUrl: str
    requestHeaders: str = Field(description="one 'Name: value' per line")
    responseCode: int = Field(description="0 when no response arrived; see error")
    responseHeaders: str
    responseBody: str
    deliveryId: str = Field(description="extension: the delivery this attempt belongs to")
    event: str = Field(description="extension: the event name, or 'ping'")
    attempt: int = Field(description="extension: 1 for the first attempt")
    status: Literal["succeeded", "failed"] = Field(description="extension: this attempt's outcome (2xx or not)")
    deliveryStatus: Literal["pending", "succeeded", "failed"] = Field(
        description="extension: the delivery's state (pending while retries remain)"
    )
    error: str | None = Field(None, description="extension: why no response arrived")
    nextAttemptAt: str | None = Field(None, description="extension: when a pending delivery is tried next")


class StackReference(_Doc):
    organization: str
    routingProject: str
    name: str
    version: int


class ListStackReferencesResponse(_Doc):
    referencedStacks: list[StackReference]


class CascadeSummary(_Doc):
    id: str
    organization: str
    root: str = Field(description="the stack whose change started it, as project/stack")
    rootDeploymentId: str | None
    operation: OperationName
    status: Literal["running", "succeeded", "failed"]
    created: str
    finished: str | None


class CascadeList(_Doc):
    cascades: list[CascadeSummary]
    continuationToken: str | None = Field(None, description="pass it to get the next page; absent on the last")


class CascadeMember(_Doc):
    stack: str
    wave: int
    status: Literal["waiting", "awaiting-approval", "queued", "running", "succeeded", "failed", "skipped"] = Field(
        description="queued: its deployment waits for a runner; running: it runs"
    )
    reason: str | None = Field(description="why it was skipped or is waiting, e.g. 'upstream database/prod failed'")
    deploymentId: str | None
    version: int | None
    approvedBy: str | None
    started: str | None
    finished: str | None


class PlanEdge(_Doc):
    upstream: str
    downstream: str
    filters: list[str]
    groups: list[str]
    triggerOn: Literal["always", "outputs-changed"]
    requireApproval: bool


class CascadeEdge(PlanEdge):
    fired: bool | None = Field(description="whether the edge fired; null until its upstream member has finished")
    reason: str | None = Field(
        description="why it did not fire, e.g. 'database/prod failed' or 'outputs of network/prod unchanged'"
    )


class Cascade(CascadeSummary):
    waves: list[list[str]]
    edges: list[CascadeEdge]
    members: list[CascadeMember]


class StackCascadeSettings(_Doc):
    requireApproval: bool = Field(description="in every cascade, this stack waits for an approval before it runs")


class ExternalEvent(_Doc):
    kind: Literal[
        "update_succeeded", "update_failed", "preview_succeeded", "preview_failed",
        "refresh_succeeded", "refresh_failed", "destroy_succeeded", "destroy_failed",
    ]  # fmt: skip
    outputs: dict[str, Any] | None = Field(
        None, description='update_succeeded only: the stack\'s outputs now; {"secret": v} marks a secret value'
    )
    resourceChanges: dict[str, int] | None = None


class ExternalEventResult(_Doc):
    kind: str
    cascadeId: str | None = Field(description="the cascade it started, if any edge could fire")
    outputsChanged: bool


class ImpactPlan(_Doc):
    root: str | None = Field(description="null when a change to the stack would start no cascade")
    operation: OperationName
    members: list[str]
    waves: list[list[str]] = Field(description="wave 0 is the root; a member runs after every upstream in it")
    edges: list[PlanEdge]


class GraphNode(_Doc):
    stack: str
    lastStatus: Status | None
    paused: bool
    requireApproval: bool


class DeploymentGraph(_Doc):
    nodes: list[GraphNode]
    edges: list[PlanEdge]


REQUEST_MODELS: tuple[type[BaseModel], ...] = (
    CreateStackRequest,
    DeploymentSettingsRequest,
    CreateDeploymentRequest,
    OrgSettingsRequest,
    TokenCreateRequest,
    Webhook,
    StackCascadeSettings,
    ExternalEvent,
)


def body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting a JSON request body parsed by hand."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        }
    }


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in (
        (400, "invalid input"),
        (401, "missing or invalid token"),
        (403, "the token's role may not do this"),
        (404, "not found, or not visible to this token"),
        (409, "conflicts with the current state"),
        (413, "request body too large"),
    )
}


# --- Auto Deploy declarations (design 5.3) ----------------------------------------------------------------

TriggerOnName = Literal["always", "outputs-changed"]


class AutoDeployEdge(_Doc):
    ref: str = Field(description="the downstream stack, 'project/stack' in the same organization")
    triggerOn: TriggerOnName | None = Field(None, description="default: the stack entry's triggerOn, else always")
    requireApproval: bool | None = Field(None, description="this edge's gate (default false)")
    filters: list[str] | None = Field(None, description="default [update_succeeded]; [] with no groups = all events")
    groups: list[Literal["stacks", "deployments"]] | None = None
    displayName: str | None = Field(None, description="default: the downstream 'project/stack'")


class AutoDeployStack(_Doc):
    project: str
    stack: str
    downstreamRefs: list[str | AutoDeployEdge] = Field(
        [], description="the stacks an update of this one deploys: 'project/stack', or an object with options"
    )
    triggerOn: TriggerOnName | None = Field(None, description="default of this stack's outgoing edges")
    requireApproval: bool | None = Field(None, description="this stack's own gate; absent = left as it is")


class AutoDeployDocument(_Doc):
    stacks: list[AutoDeployStack] = Field(
        description="the org's whole declared graph; edges are keyed by (upstream, downstream), never by position"
    )


class AutoDeployEdgeState(_Doc):
    upstream: str
    downstream: str
    webhook: str = Field(description="the managed webhook on the upstream stack that carries the edge")
    triggerOn: TriggerOnName
    requireApproval: bool
    filters: list[str]
    groups: list[str]
    displayName: str
    active: bool


class AutoDeployFieldChange(_Doc):
    from_: Any = Field(alias="from")
    to: Any


class AutoDeployEdgeUpdate(AutoDeployEdgeState):
    changes: dict[str, AutoDeployFieldChange] = Field(description="the options that change, by name")


class AutoDeployGateChange(_Doc):
    stack: str
    from_: bool = Field(alias="from")
    to: bool


class AutoDeployDiff(_Doc):
    create: list[AutoDeployEdgeState]
    update: list[AutoDeployEdgeUpdate]
    delete: list[AutoDeployEdgeState]
    unchanged: list[AutoDeployEdgeState]
    gates: list[AutoDeployGateChange] = Field(description="stack gates (requireApproval of stack entries) that change")


class AutoDeployResult(_Doc):
    applied: bool = Field(description="false for a dry run: nothing was changed")
    diff: AutoDeployDiff


REQUEST_MODELS = (*REQUEST_MODELS, AutoDeployDocument)
