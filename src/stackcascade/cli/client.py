"""The HTTP API client the CLI uses for everything: the CLI never touches the database.

Every failure becomes a CliError whose message is the server's own ``message`` plus the status code,
or says which server could not be reached. Tokens are only ever put in the Authorization header.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx2

from stackcascade import __version__
from stackcascade.cli.errors import CliError
from stackcascade.cli.refs import StackRef

Json = dict[str, Any]
DEFAULT_TIMEOUT = 30.0
_ERRNO = re.compile(r"^\[Errno -?\d+\]\s*")


def api_path(*segments: str) -> str:
    """``/api/...`` with each segment percent-encoded, so a name or id can never change which endpoint is called."""
    for segment in segments:
        if segment in {"", ".", ".."}:
            raise CliError(f"{segment!r} is not a valid name or id")
    return "/api/" + "/".join(quote(segment, safe="") for segment in segments)


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
        self, method: str, path: str, *, json: object = None, params: Mapping[str, object] | None = None
    ) -> Any:
        """Send one request; the decoded JSON body on success (None for an empty body), CliError otherwise."""
        query = {key: str(value) for key, value in (params or {}).items() if value is not None}
        try:
            response = self._http.request(method, path, json=json, params=query or None)
        except httpx2.TimeoutException:
            raise CliError(f"the server at {self.server} did not answer within {self._timeout:g} seconds") from None
        except httpx2.TransportError as exc:
            reason = _ERRNO.sub("", str(exc)) or type(exc).__name__
            raise CliError(f"could not reach the server at {self.server}: {reason}") from None
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


def _settings(ref: StackRef) -> str:
    return api_path("stacks", ref.org, ref.project, ref.stack, "deployments", "settings")


def _deployments(ref: StackRef, *more: str) -> str:
    return api_path("stacks", ref.org, ref.project, ref.stack, "deployments", *more)


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
