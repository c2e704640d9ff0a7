"""Deployment settings: validation, key normalisation, merge-patch and the public view.

Settings travel as plain JSON documents. This module knows their shape (the contract's
``DeploymentSettingsRequest``), matches keys case-insensitively (``repoURL``/``repoUrl``,
``agentPoolID``/``agentPoolId``), drops unknown keys, and turns every secret value into a sealed
``{"ciphertext": ...}`` through a sealing function it is given, so it never sees a key.

A ciphertext a client sends back comes out as ``{OFFERED: c}``, which no runner opens: every
ciphertext is sealed with the one server key, so it is usable only once ``bind_ciphertexts`` found it
in the settings of the stack it is for.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Any, Final

from stackcascade.domain.errors import InvalidInput

Json = dict[str, Any]
Seal = Callable[[str], str]
CheckSealed = Callable[[str], bool]

MASK: Final = "[secret]"
OFFERED: Final = "offeredCiphertext"  # a ciphertext from a request, not yet bound to a stack
REDACTED: Final = "***"


class _Kind:
    """A leaf kind of the settings schema."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


STR: Final = _Kind("string")
REPO_URL: Final = _Kind("git URL")
BOOL: Final = _Kind("boolean")
STR_LIST: Final = _Kind("list of strings")
SECRET: Final = _Kind("secret value")
ENV_MAP: Final = _Kind("map of environment variables")
OBJECT: Final = _Kind("object")

Schema = dict[str, "_Kind | Schema"]

_GIT_AUTH: Schema = {
    "accessToken": SECRET,
    "basicAuth": {"userName": SECRET, "password": SECRET},
    "sshAuth": {"sshPrivateKey": SECRET, "password": SECRET},
}

SETTINGS_SCHEMA: Final[Schema] = {
    "tag": STR,
    "agentPoolID": STR,
    "sourceContext": {
        "git": {
            "repoUrl": REPO_URL,
            "branch": STR,
            "commit": STR,
            "tag": STR,
            "repoDir": STR,
            "gitAuth": _GIT_AUTH,
        },
    },
    "operationContext": {
        "preRunCommands": STR_LIST,
        "environmentVariables": ENV_MAP,
        "options": {
            "skipInstallDependencies": BOOL,
            "skipIntermediateDeployments": BOOL,
            "shell": STR,
            "deleteAfterDestroy": BOOL,
            "remediateIfDriftDetected": BOOL,
            "timeout": _Kind("integer"),
        },
        "oidc": OBJECT,
        "role": OBJECT,
    },
    "executorContext": {"executorImage": OBJECT, "executorRootPath": STR},
    "cacheOptions": {"enable": BOOL},
    "gitHub": OBJECT,
    "vcs": OBJECT,
}

# scheme "://" authority: what git reads as the host part of a URL (userinfo ends at its last "@")
_URL_AUTHORITY = re.compile(r"^\s*([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)")
_ENV_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
MAX_TIMEOUT_SECONDS: Final = 7 * 24 * 3600


class _Normaliser:
    def __init__(self, seal: Seal, is_sealed: CheckSealed, keep_nulls: bool) -> None:
        self._seal = seal
        self._is_sealed = is_sealed
        self._keep_nulls = keep_nulls

    def document(self, raw: object, schema: Schema, path: str) -> Json:
        if not isinstance(raw, dict):
            raise InvalidInput(f"{path or 'the body'} must be a JSON object")
        canonical = {key.lower(): key for key in schema}
        out: Json = {}
        for key, value in raw.items():
            name = canonical.get(str(key).lower())
            if name is None:
                continue  # unknown fields in Pulumi shapes are accepted and ignored
            where = f"{path}.{name}" if path else name
            if name in out:
                raise InvalidInput(f"{where} is given twice (keys are matched case-insensitively)")
            if value is None:
                if self._keep_nulls and path:
                    out[name] = None
                continue  # a top-level null means "not given"
            spec = schema[name]
            out[name] = self.document(value, spec, where) if isinstance(spec, dict) else self.leaf(value, spec, where)
        git = out.get("git") if path == "sourceContext" else None
        if isinstance(git, dict) and git.get("branch") is not None and git.get("commit") is not None:
            raise InvalidInput("sourceContext.git: give either 'branch' or 'commit', not both")
        return out

    def leaf(self, value: object, kind: _Kind, where: str) -> object:
        if kind is STR or kind is REPO_URL:
            if not isinstance(value, str):
                raise InvalidInput(f"{where} must be a string")
            if kind is REPO_URL and _credentials_in(value):
                raise InvalidInput(
                    f"{where} must not carry credentials (user:password@ or token@): put them in "
                    'sourceContext.git.gitAuth.basicAuth (userName, and password as {"secret": "..."}) '
                    'or in sourceContext.git.gitAuth.accessToken as {"secret": "..."}'
                )
            return value
        if kind is BOOL:
            if not isinstance(value, bool):
                raise InvalidInput(f"{where} must be true or false")
            return value
        if kind is STR_LIST:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InvalidInput(f"{where} must be a list of strings")
            return list(value)
        if kind is SECRET:
            return self.secret(value, where)
        if kind is ENV_MAP:
            return self.env_map(value, where)
        if kind is OBJECT:
            if not isinstance(value, dict):
                raise InvalidInput(f"{where} must be a JSON object")
            return value
        if kind.name == "integer":
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TIMEOUT_SECONDS:
                raise InvalidInput(f"{where} must be a whole number of seconds between 1 and {MAX_TIMEOUT_SECONDS}")
            return value
        raise AssertionError(kind)  # pragma: no cover - the schema has no other kinds

    def secret(self, value: object, where: str) -> object:
        """A secret is a string (kept plain only in env maps), {"secret": s} or a sealed {"ciphertext": c}."""
        if isinstance(value, dict):
            lowered = {str(k).lower(): v for k, v in value.items() if v is not None}
            if isinstance(lowered.get("secret"), str) and lowered["secret"] != MASK:
                return {"ciphertext": self._seal(lowered["secret"])}
            ciphertext = lowered.get("ciphertext")
            if isinstance(ciphertext, list) and len(ciphertext) == 1:
                ciphertext = ciphertext[0]
            if isinstance(ciphertext, str):
                ciphertext = unwrap_ciphertext(ciphertext)
                if not self._is_sealed(ciphertext):
                    raise InvalidInput(
                        f'{where}: the ciphertext was not sealed by this server; send the value as {{"secret": ...}}'
                    )
                return {OFFERED: ciphertext}
            if isinstance(lowered.get("plaintext"), str):
                return {"ciphertext": self._seal(lowered["plaintext"])}
            raise InvalidInput(f'{where} must be {{"secret": "value"}} (or the ciphertext this server returned)')
        if isinstance(value, str):
            return {"ciphertext": self._seal(value)}
        raise InvalidInput(f'{where} must be {{"secret": "value"}}')

    def env_map(self, value: object, where: str) -> Json:
        if not isinstance(value, dict):
            raise InvalidInput(f"{where} must be an object of NAME: value")
        out: Json = {}
        for name, item in value.items():
            if not name or not set(name) <= _ENV_NAME_CHARS or name[0].isdigit():
                raise InvalidInput(f"{where}: {name!r} is not a valid environment variable name (letters, digits, '_')")
            if item is None:
                if self._keep_nulls:
                    out[name] = None
                continue
            if isinstance(item, str):
                out[name] = item
            elif isinstance(item, dict):
                out[name] = self.env_value(item, f"{where}.{name}")
            else:
                raise InvalidInput(
                    f'{where}.{name} must be a string or {{"secret": "value"}}; quote numbers and booleans'
                )
        return out

    def env_value(self, item: dict[str, Any], where: str) -> object:
        """An env value object: {"secret": s} is secret; {"plaintext": p} (with an empty secret) is plain."""
        given = {str(k).lower(): v for k, v in item.items() if v is not None}
        secret = given.get("secret")
        if isinstance(given.get("plaintext"), str) and not secret and "ciphertext" not in given:
            return given["plaintext"]
        return self.secret(item, where)


def _credentials_in(url: str) -> bool:
    """An http(s) URL with any userinfo (a lone user name there is often a token), or a password in any URL.

    ``ssh://git@host/...`` and scp-like ``git@host:org/repo`` name a user, which is no secret.
    """
    found = _URL_AUTHORITY.match(url)
    if found is None:
        return False
    userinfo = found.group(2).rpartition("@")[0]
    return bool(userinfo) and (found.group(1).lower() in {"http", "https"} or ":" in userinfo)


def redact_repo_url(url: str) -> str:
    """The URL as a view shows it: stored before credentials were refused, it may still hold some."""
    found = _URL_AUTHORITY.match(url)
    if found is None or not _credentials_in(url):
        return url
    userinfo, _, host = found.group(2).rpartition("@")
    user, colon, _ = userinfo.partition(":")
    shown = f"{user}:{REDACTED}" if colon else REDACTED  # a lone http(s) user name may be the token
    return f"{found.group(1)}://{shown}@{host}{url[found.end() :]}"


def bind_ciphertexts(incoming: Json, saved: Json | None, stack: str) -> Json:
    """``incoming`` with each offered ciphertext made usable, if ``saved`` (that stack's settings) holds it.

    One server key seals every stack's secrets, and viewers read ciphertexts: without this, a ciphertext
    copied from another stack or org would be decrypted into this stack's deployment. Requiring it to
    be held already keeps the GET-modify-PUT round trip working, like Pulumi's per-stack keys do.
    ``InvalidInput`` names the first one that is not held.
    """
    held: set[str] = set()

    def collect(value: Json, where: str) -> Json:
        if isinstance(value.get("ciphertext"), str):
            held.add(value["ciphertext"])
        return value

    def bind(value: Json, where: str) -> Json:
        if OFFERED not in value:
            return value
        if value[OFFERED] not in held:
            raise InvalidInput(
                f'{where}: this ciphertext was not issued for stack {stack}: give the value as {{"secret": "..."}}'
            )
        return {"ciphertext": value[OFFERED]}

    _map_secrets(saved or {}, SETTINGS_SCHEMA, "", collect)
    return _map_secrets(incoming, SETTINGS_SCHEMA, "", bind)


def _map_secrets(document: Json, schema: Schema, path: str, change: Callable[[Json, str], Json]) -> Json:
    """``document`` with ``change`` applied to each secret the schema allows (never inside free objects)."""
    out: Json = {}
    for key, value in document.items():
        spec = schema.get(key)
        where = f"{path}.{key}" if path else key
        if isinstance(value, dict) and isinstance(spec, dict):
            out[key] = _map_secrets(value, spec, where, change)
        elif isinstance(value, dict) and spec is SECRET:
            out[key] = change(value, where)
        elif isinstance(value, dict) and spec is ENV_MAP:
            out[key] = {n: change(v, f"{where}.{n}") if isinstance(v, dict) else v for n, v in value.items()}
        else:
            out[key] = value
    return out


def unwrap_ciphertext(value: str) -> str:
    """Accept a ciphertext as stored or as the API shows it (standard base64 of the stored form)."""
    if value.startswith("gAAAA"):
        return value
    try:
        return base64.b64decode(value.encode(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return value


def wrap_ciphertext(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def normalise(raw: object, *, seal: Seal, is_sealed: CheckSealed, patch: bool) -> Json:
    """Validate a settings document from a request and return its stored form.

    With ``patch`` a nested null is kept (merge-patch deletes that key); otherwise nulls are dropped.
    Ciphertexts sent back stay offered until ``bind_ciphertexts``.
    """
    return _Normaliser(seal, is_sealed, keep_nulls=patch).document(raw, SETTINGS_SCHEMA, "")


def merge_patch(base: Json, patch: Json) -> Json:
    """RFC 7386 merge of ``patch`` over ``base``; lists are replaced whole.

    Setting ``branch`` drops an inherited ``commit`` and the other way round: they exclude each other.
    """
    out = dict(base)
    if "branch" in patch and patch["branch"] is not None:
        out.pop("commit", None)
    if "commit" in patch and patch["commit"] is not None:
        out.pop("branch", None)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict) and "ciphertext" not in value:
            out[key] = merge_patch(out[key], value)
        elif isinstance(value, dict):
            out[key] = _drop_nulls(value)
        else:
            out[key] = value
    return out


def _drop_nulls(doc: Json) -> Json:
    return {k: (_drop_nulls(v) if isinstance(v, dict) else v) for k, v in doc.items() if v is not None}


def public_view(stored: Json) -> Json:
    """The settings as the API shows them.

    Secrets are masked and carry their ciphertext (base64) so a client can send them back unchanged.
    Plain environment values are shown as ``{"secret": "", "plaintext": v}`` because the Pulumi SDK
    parses every environment value as a SecretValue with a required string ``secret``. A repoUrl
    with credentials (saved before they were refused) is shown redacted.
    """
    view = _view(stored, in_env=False)
    git = git_source(view)
    if isinstance(git.get("repoUrl"), str):
        git["repoUrl"] = redact_repo_url(git["repoUrl"])
    return view


def _view(stored: Json, *, in_env: bool) -> Json:
    out: Json = {}
    for key, value in stored.items():
        if isinstance(value, dict) and set(value) == {"ciphertext"}:
            out[key] = {"secret": MASK, "ciphertext": wrap_ciphertext(str(value["ciphertext"]))}
        elif isinstance(value, dict):
            out[key] = _view(value, in_env=key == "environmentVariables")
        elif in_env and isinstance(value, str):
            out[key] = {"secret": "", "plaintext": value}
        else:
            out[key] = value
    return out


def environment(stored: Json) -> list[tuple[str, str | None]]:
    """(name, plain value or None when secret) for each settings variable, in order."""
    context = stored.get("operationContext")
    env = context.get("environmentVariables") if isinstance(context, dict) else None
    if not isinstance(env, dict):
        return []
    return [(name, value if isinstance(value, str) else None) for name, value in env.items()]


def git_source(stored: Json) -> Json:
    source = stored.get("sourceContext")
    git = source.get("git") if isinstance(source, dict) else None
    return git if isinstance(git, dict) else {}


def option(stored: Json, name: str) -> object:
    context = stored.get("operationContext")
    options = context.get("options") if isinstance(context, dict) else None
    return options.get(name) if isinstance(options, dict) else None
