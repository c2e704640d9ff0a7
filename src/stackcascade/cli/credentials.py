"""The login file: server URL, token and default org, readable by its owner only."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import typer

from stackcascade.cli.errors import CliError

FILE_MODE = 0o600
DIR_MODE = 0o700


@dataclass(frozen=True, slots=True)
class Credentials:
    server: str
    token: str = field(repr=False)  # never in a repr, a log line or a traceback
    org: str | None = None


def config_dir() -> Path:
    """``$XDG_CONFIG_HOME/stackcascade`` (the spec says a relative XDG_CONFIG_HOME is ignored), else ~/.config."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".config"
    return root / "stackcascade"


def credentials_path() -> Path:
    return config_dir() / "credentials.json"


def load() -> Credentials | None:
    """The saved login, or None when there is none."""
    path = credentials_path()
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    if path.stat().st_mode & 0o077:
        typer.echo(f"warning: {path} is readable by other users; run: chmod 600 {path}", err=True)
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("server"), str)
        or not isinstance(data.get("token"), str)
        or not isinstance(data.get("org"), str | None)
    ):
        raise CliError(f"{path} is not a valid credentials file: remove it or run `cascade login --server URL` again")
    return Credentials(server=data["server"], token=data["token"], org=data.get("org"))


def save(credentials: Credentials) -> Path:
    """Write the file atomically, created with mode 0600 so the token is never readable by others, even briefly."""
    path = credentials_path()
    try:
        _write(path, credentials)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def _write(path: Path, credentials: Credentials) -> None:
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path.parent, DIR_MODE)
    payload = {"server": credentials.server, "token": credentials.token}
    if credentials.org:
        payload["org"] = credentials.org
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), FILE_MODE)  # whatever the umask
            json.dump(payload, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def remove() -> bool:
    """Delete the login file; False when there was none."""
    path = credentials_path()
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise CliError(f"cannot remove {path}: {exc.strerror or exc}") from None
    return True
