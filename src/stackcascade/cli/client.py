"""The HTTP API client the CLI uses for everything: the CLI never touches the database.

Every failure becomes a CliError whose message is the server's own ``message`` plus the status code,
or says which server could not be reached. Tokens are only ever put in the Authorization header.
"""

from __future__ import annotations

import datetime as dt
import json as jsonlib
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx2

from stackcascade import __version__
from stackcascade.cli.errors import CliError
from stackcascade.cli.refs import StackRef

Json = dict[str, Any]
WebhookOwner = StackRef | str  # a stack, or an organization by name
DEFAULT_TIMEOUT = 30.0
MAX_DELIVERIES_PAGE = 100  # the server's largest pageSize for webhook deliveries
_ERRNO = re.compile(r"^\[Errno -?\d+\]\s*")


def api_path(*segments: str) -> str:
    """``/api/...`` with each segment percent-encoded, so a name or id can never change which endpoint is called."""
    for segment in segments:
        if segment in {"", ".", ".."}:
            raise CliError(f"{segment!r} is not a valid name or id")
    return "/api/" + "/".join(quote(segment, safe="") for segment in segments)


def _not_json(value: object, where: str) -> str | None:
    """Where ``value`` holds something JSON cannot carry, and what to do about it; None when it has nothing.

    A file the user gave may: Python reads ``NaN`` in JSON, YAML reads an unquoted ``2024-01-01`` as a date.
    """
    if value is None or isinstance(value, str | bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{where} is NaN or infinite, which JSON cannot carry: give a number"
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str | int | float | bool) or key is None:
                return f"{where} has a key of type {type(key).__name__}: keys must be strings"
            if found := _not_json(item, f"{where}.{key}"):
                return found
        return None
    if isinstance(value, list | tuple):
        return next((found for i, item in enumerate(value) if (found := _not_json(item, f"{where}[{i}]"))), None)
    if isinstance(value, dt.date | dt.time):
        return f"{where} is a date or time (YAML reads an unquoted 2024-01-01 as one): quote it"
    return f"{where} is a {type(value).__name__}, which JSON cannot carry: give a string"


def _json_body(value: object) -> bytes:
    """The request body; a CliError naming the first value JSON cannot carry, before anything is sent."""
    if problem := _not_json(value, "the request"):
        raise CliError(f"cannot send this: {problem.removeprefix('the request.')}")
    return jsonlib.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Exchange:
    """When one request went out and its answer came back (``time.monotonic()``), and the answer's Date and
    ETag headers."""

    sent: float
    received: float
    date: str | None
    etag: str | None = None


_ATTEMPTS_WHEN_BUSY = 3
_MAX_RETRY_AFTER_SECONDS = 5.0


def _retry_after(response: httpx2.Response) -> float | None:
    """Seconds to wait before sending again: only a 503 that says when (the server rolled the change back
    because it collided with another one); None for every other answer."""
    if response.status_code != 503:
        return None
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER_SECONDS) if seconds == seconds else None


class ApiClient:
    """A thin, typed wrapper over the REST API (one ``httpx2.Client``; pass ``transport`` to test without a server)."""

    def __init__(
        self,
        server: str,
        token: str,
        *,
        transport: httpx2.BaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.server = server
        self._timeout = timeout
        self._http = httpx2.Client(
            base_url=server,
            headers={"Authorization": f"token {token}", "User-Agent": f"stackcascade-cli/{__version__}"},
            transport=transport,
            timeout=timeout,
        )
        self.last_exchange: Exchange | None = None  # the latest answer, for reading the server's clock

    def __repr__(self) -> str:
        return f"ApiClient({self.server!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    # -- transport -------------------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: object = None,
        params: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Send one request; the decoded JSON body on success (None for an empty body), CliError otherwise."""
        query = {key: str(value) for key, value in (params or {}).items() if value is not None}
        body = None if json is None else _json_body(json)
        sending = {**({} if body is None else {"Content-Type": "application/json"}), **(headers or {})}
        for attempt in range(1, _ATTEMPTS_WHEN_BUSY + 1):
            sent = time.monotonic()
            try:
                response = self._http.request(method, path, content=body, headers=sending, params=query or None)
            except httpx2.TimeoutException:
                raise CliError(f"the server at {self.server} did not answer within {self._timeout:g} seconds") from None
            except httpx2.TransportError as exc:
                reason = _ERRNO.sub("", str(exc)) or type(exc).__name__
                raise CliError(f"could not reach the server at {self.server}: {reason}") from None
            wait = _retry_after(response)
            if wait is None or attempt == _ATTEMPTS_WHEN_BUSY:
                break
            time.sleep(wait)  # a 503 with Retry-After: nothing was changed, the same request may succeed
        self.last_exchange = Exchange(
            sent, time.monotonic(), response.headers.get("date"), response.headers.get("etag")
        )
        if response.is_redirect:
            where = response.headers.get("location", "elsewhere")
            raise CliError(f"the server at {self.server} redirected to {where}: use that address with --server")
        if response.is_error:
            raise _api_error(response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise CliError(
                f"unexpected answer from {response.request.url}: not JSON (HTTP {response.status_code})"
            ) from None

    def _object(self, method: str, path: str, **kwargs: Any) -> Json:
        value = self.request(method, path, **kwargs)
        if not isinstance(value, dict):
            raise CliError(f"unexpected answer from {self.server}{path}: expected a JSON object")
        return value

    def _objects(self, method: str, path: str, **kwargs: Any) -> list[Json]:
        value = self.request(method, path, **kwargs)
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise CliError(f"unexpected answer from {self.server}{path}: expected a JSON list of objects")
        return value

    # -- endpoints -------------------------------------------------------------------------------------------

    def check_access(self, org: str | None) -> None:
        """Prove the token works (and, given ``org``, that it can see that org) with a cheap read."""
        self.request("GET", "/api/user/stacks", params={"organization": org, "maxResults": 1})

    def create_stack(self, ref: StackRef, tags: Mapping[str, str]) -> Json:
        body: Json = {"stackName": ref.stack}
        if tags:
            body["tags"] = dict(tags)
        return self._object("POST", api_path("stacks", ref.org, ref.project), json=body)

    def get_stack(self, ref: StackRef) -> Json:
        return self._object("GET", api_path("stacks", ref.org, ref.project, ref.stack))

    def delete_stack(self, ref: StackRef) -> None:
        self.request("DELETE", api_path("stacks", ref.org, ref.project, ref.stack))

    def list_stacks(self, *, org: str | None = None, project: str | None = None, page_size: int = 500) -> Json:
        """Every visible stack, following ``continuationToken`` to the end; the API shape with all pages merged."""
        stacks: list[Any] = []
        token: str | None = None
        seen: set[str] = set()
        while True:
            params = {"organization": org, "project": project, "continuationToken": token, "maxResults": page_size}
            page = self._object("GET", "/api/user/stacks", params=params)
            stacks.extend(page.get("stacks") or [])
            token = page.get("continuationToken")
            if not token:
                return {"stacks": stacks}
            if token in seen:  # a server bug must not become an endless loop
                raise CliError(f"the server at {self.server} repeated a continuationToken while listing stacks")
            seen.add(token)

    def get_settings(self, ref: StackRef) -> Json:
        return self._object("GET", _settings(ref))

    def save_settings(self, ref: StackRef, document: Json, *, replace: bool) -> Json:
        """POST is a merge-patch over the saved settings; PUT (``replace``) swaps them whole."""
        return self._object("PUT" if replace else "POST", _settings(ref), json=document)

    def delete_settings(self, ref: StackRef) -> None:
        self.request("DELETE", _settings(ref))

    def create_deployment(self, ref: StackRef, body: Json) -> Json:
        return self._object("POST", _deployments(ref), json=body)

    def list_deployments(
        self,
        *,
        ref: StackRef | None = None,
        org: str | None = None,
        page: int | None = None,
        page_size: int | None = None,
    ) -> Json:
        if ref is not None:
            path = _deployments(ref)
        elif org:
            path = api_path("orgs", org, "deployments")
        else:
            raise CliError("give a stack or an organization")
        return self._object("GET", path, params={"page": page, "pageSize": page_size})

    def get_deployment(self, ref: StackRef, deployment_id: str) -> Json:
        return self._object("GET", _deployments(ref, deployment_id))

    def get_deployment_version(self, ref: StackRef, version: int) -> Json:
        return self._object("GET", _deployments(ref, "version", str(version)))

    def cancel_deployment(self, ref: StackRef, deployment_id: str) -> Json:
        return self._object("POST", _deployments(ref, deployment_id, "cancel"))

    def create_token(self, *, org: str | None, role: str | None, name: str | None, runner: bool) -> Json:
        body: Json = {key: value for key, value in (("org", org), ("role", role), ("name", name)) if value is not None}
        if runner:
            body["runner"] = True
        return self._object("POST", "/api/tokens", json=body)

    def list_tokens(self) -> Json:
        return self._object("GET", "/api/tokens")

    def revoke_token(self, token_id: str) -> None:
        self.request("DELETE", api_path("tokens", token_id))

    def create_webhook(self, owner: WebhookOwner, body: Json) -> Json:
        return self._object("POST", _hooks(owner), json=body)

    def list_webhooks(self, owner: WebhookOwner) -> list[Json]:
        return self._objects("GET", _hooks(owner))

    def get_webhook(self, owner: WebhookOwner, name: str) -> Json:
        return self._object("GET", _hooks(owner, name))

    def update_webhook(self, owner: WebhookOwner, name: str, body: Json) -> Json:
        """PATCH: only the fields in ``body`` change; an empty ``secret`` removes the secret."""
        return self._object("PATCH", _hooks(owner, name), json=body)

    def delete_webhook(self, owner: WebhookOwner, name: str) -> None:
        self.request("DELETE", _hooks(owner, name))

    def ping_webhook(self, owner: WebhookOwner, name: str) -> Json:
        """Send a ping now; the recorded attempt (also when the receiver failed: see ``responseCode``)."""
        return self._object("POST", _hooks(owner, name, "ping"))

    def list_webhook_deliveries(
        self, owner: WebhookOwner, name: str, *, page_size: int | None = None, before: str | None = None
    ) -> list[Json]:
        """One page of delivery attempts, newest first; ``before`` is the last attempt id of the previous page."""
        return self._objects("GET", _hooks(owner, name, "deliveries"), params={"pageSize": page_size, "before": before})

    def webhook_deliveries(
        self, owner: WebhookOwner, name: str, *, limit: int, before: str | None = None
    ) -> list[Json]:
        """The newest ``limit`` attempts (older than ``before``), newest first, in pages of at most 100."""
        attempts: list[Json] = []
        seen: set[str] = set()
        while len(attempts) < limit:
            wanted = min(limit - len(attempts), MAX_DELIVERIES_PAGE)
            page = self.list_webhook_deliveries(owner, name, page_size=wanted, before=before)
            attempts.extend(page[:wanted])
            last = page[-1].get("id") if page else None
            if len(page) < wanted or not isinstance(last, str):
                break
            if last in seen:  # a server bug must not become an endless loop
                raise CliError(f"the server at {self.server} repeated a page while listing webhook deliveries")
            seen.add(last)
            before = last
        return attempts

    def redeliver_webhook(self, owner: WebhookOwner, name: str, delivery: str) -> Json:
        """Send a delivery (named by its id or one of its attempts' ids) again now; the new attempt."""
        return self._object("POST", _hooks(owner, name, "deliveries", delivery, "redeliver"))

    def list_cascades(self, org: str, *, page_size: int | None = None, status: str | None = None) -> Json:
        """The org's newest cascades (summaries, without members), newest first; ``status``: only those in
        it (comma-separated: in one of them)."""
        params = {"pageSize": page_size, "status": status}
        return self._object("GET", api_path("orgs", org, "cascades"), params=params)

    def get_cascade(self, org: str, cascade_id: str) -> Json:
        """A cascade with its waves, edges and members."""
        return self._object("GET", api_path("orgs", org, "cascades", cascade_id))

    def cascade_member_action(self, cascade_id: str, member: StackRef, action: str) -> Json:
        """``approve``, ``reject`` or ``retry`` one member (in its organization's cascade); the cascade afterwards."""
        path = api_path("orgs", member.org, "cascades", cascade_id, "members", member.project, member.stack, action)
        return self._object("POST", path)

    def impact_plan(self, ref: StackRef, operation: str) -> Json:
        """The members and waves a change to the stack would set off (nothing runs)."""
        return self._object("GET", _stack(ref, "cascade-plan"), params={"operation": operation})

    def deployment_graph(self, org: str) -> Json:
        return self._object("GET", api_path("orgs", org, "graph"))

    def record_event(self, ref: StackRef, body: Json) -> Json:
        """Report an update made outside stackcascade; ``cascadeId`` is the cascade it started, if any."""
        return self._object("POST", _stack(ref, "events"), json=body)

    def get_cascade_settings(self, ref: StackRef) -> Json:
        return self._object("GET", _stack(ref, "cascadesettings"))

    def update_cascade_settings(self, ref: StackRef, *, require_approval: bool) -> Json:
        return self._object("PATCH", _stack(ref, "cascadesettings"), json={"requireApproval": require_approval})

    def get_autodeploy(self, org: str) -> Json:
        """The org's Auto Deploy declaration (its managed deployment edges and their stacks' gates)."""
        return self._object("GET", api_path("orgs", org, "autodeploy"))

    def put_autodeploy(self, org: str, document: Json, *, dry_run: bool, if_match: str | None = None) -> Json:
        """Apply a declaration, or only diff it: ``{applied, diff}``. ``if_match``: the ETag of the dry run
        whose diff was shown; the server then refuses (412) if the declaration changed since."""
        params = {"dryRun": "true" if dry_run else "false"}
        headers = {"If-Match": if_match} if if_match else None
        return self._object("PUT", api_path("orgs", org, "autodeploy"), json=document, params=params, headers=headers)


def _stack(ref: StackRef, *more: str) -> str:
    return api_path("stacks", ref.org, ref.project, ref.stack, *more)


def _settings(ref: StackRef) -> str:
    return api_path("stacks", ref.org, ref.project, ref.stack, "deployments", "settings")


def _deployments(ref: StackRef, *more: str) -> str:
    return api_path("stacks", ref.org, ref.project, ref.stack, "deployments", *more)


def _hooks(owner: WebhookOwner, *more: str) -> str:
    if isinstance(owner, StackRef):
        return api_path("stacks", owner.org, owner.project, owner.stack, "hooks", *more)
    return api_path("orgs", owner, "hooks", *more)


def _api_error(response: httpx2.Response) -> CliError:
    """The server's ``{"code", "message"}`` as ``message (code)``; a generic line for a non-API answer (a proxy)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    status = response.status_code
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        message = f"{body['message']} ({status})"
    else:
        message = f"HTTP {status} {response.reason_phrase} from {response.request.url.copy_with(query=None)}"
    if status == 401:
        message += "; pass a valid --token, set CASCADE_TOKEN or run `cascade login`"
    return CliError(message, status=status)
