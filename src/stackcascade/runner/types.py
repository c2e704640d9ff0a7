"""What the runner's parts hand each other. The runner talks to the server only over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stackcascade.runner.groups import GroupLog

# Called with each output line of a process (already decoded, without the newline).
LineSink = Callable[[str], Awaitable[None]]

OPERATIONS = ("update", "preview", "refresh", "destroy")


class StepFailed(Exception):
    """A step failed; ``reason`` is the short text recorded on the deployment."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class GitAuth:
    """Decrypted git credentials; they reach git only through environment variables or 0600 files."""

    access_token: str | None = None
    username: str | None = None
    password: str | None = None
    ssh_private_key: str | None = None
    ssh_passphrase: str | None = None


@dataclass(frozen=True, slots=True)
class SourceSpec:
    repo_url: str
    branch: str | None = None
    commit: str | None = None
    repo_dir: str | None = None
    auth: GitAuth | None = None


@dataclass(slots=True)
class RunContext:
    """Everything a step needs to run processes for one deployment."""

    env: dict[str, str]  # the complete environment of every process
    shell: str
    on_line: LineSink
    cancel: asyncio.Event  # set when the deployment was cancelled
    deadline: float  # time.monotonic() value; past it the deployment has timed out
    grace_seconds: float = 10.0
    stack: str = ""  # fully qualified for the runtime: org/project/stack
    groups: GroupLog | None = None  # records each process group, so a killed runner's steps are stopped


@dataclass(frozen=True, slots=True)
class ProcessResult:
    exit_code: int
    stopped: str | None = None  # "cancelled" or "timed out" when we killed it


@dataclass(slots=True)
class OperationResult:
    outputs: dict[str, Any] | None = None  # only meaningful after a successful update
    secret_outputs: frozenset[str] = field(default_factory=frozenset)
    resource_changes: dict[str, int] | None = None


@dataclass(frozen=True, slots=True)
class Project:
    """A detected project: its directory and the runtime that runs it."""

    path: Path
    runtime: str  # "pulumi" | "tofu" | "command"
