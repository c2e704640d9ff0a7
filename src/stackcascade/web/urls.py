"""Every console address in one place. ``~`` cannot occur in a name, so org-level pages never collide
with ``/{org}/{project}/{stack}``."""

from __future__ import annotations

from urllib.parse import quote, urlencode

STATIC = "/~/static"
_API_PREFIXES = ("/api/", "/healthz")


def is_console_path(path: str) -> bool:
    """Whether the console may answer ``path``: everything but the API (``/api``) and ``/healthz``."""
    return not (path.startswith(_API_PREFIXES) or path == "/api")


def _path(*parts: str) -> str:
    return "/" + "/".join(quote(part, safe="") for part in parts)


def home() -> str:
    return "/"


def sign_in(next_url: str | None = None) -> str:
    return "/~/login" + (f"?{urlencode({'next': next_url})}" if next_url else "")


def sign_out() -> str:
    return "/~/logout"


def org(name: str) -> str:
    return _path(name)


def graph(org_name: str) -> str:
    return _path(org_name, "~", "graph")


def cascades(org_name: str) -> str:
    return _path(org_name, "~", "cascades")


def cascade(org_name: str, cascade_id: str) -> str:
    return _path(org_name, "~", "cascades", cascade_id)


def org_webhooks(org_name: str) -> str:
    return _path(org_name, "~", "webhooks")


def live(org_name: str) -> str:
    return _path(org_name, "~", "live")


def stack(org_name: str, project: str, stack_name: str) -> str:
    return _path(org_name, project, stack_name)


def stack_ref(org_name: str, ref: str) -> str:
    """``project/stack`` (as cascades and graphs name stacks) to the stack page."""
    project, _, stack_name = ref.partition("/")
    return stack(org_name, project, stack_name)


def stack_webhooks(org_name: str, project: str, stack_name: str) -> str:
    return _path(org_name, project, stack_name, "webhooks")


def deployment(org_name: str, project: str, stack_name: str, deployment_id: str) -> str:
    return _path(org_name, project, stack_name, "deployments", deployment_id)


def static(name: str) -> str:
    return f"{STATIC}/{name}"


def stack_action(org_name: str, project: str, stack_name: str, action: str) -> str:
    """A stack's form targets: ``deploy``, ``pause``, ``resume``, ``gate``."""
    return _path(org_name, project, stack_name, action)


def deployment_action(org_name: str, project: str, stack_name: str, deployment_id: str, action: str) -> str:
    """A deployment's ``cancel`` form and its ``live`` event stream."""
    return _path(org_name, project, stack_name, "deployments", deployment_id, action)
