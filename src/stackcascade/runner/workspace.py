"""The *source* step: put a deployment's source into its stack's (cached) workspace.

The workspace directory belongs to one stack and persists between deployments, so a git source is
cloned once and only fetched afterwards; a plain local directory is copied fresh every time. The
directory is owned entirely by this module: its contents are replaced as needed.

Credentials never appear in argv or in the log: user name and password (or token) reach git through
a ``GIT_ASKPASS`` helper that reads them from environment variables set only on the git processes;
an ssh key goes into a 0600 file named by ``GIT_SSH_COMMAND``. Helper files live in a private (0700)
temporary directory removed when the step ends. Credentials embedded in an https URL are moved out of
the URL the same way, and messages always name the URL without them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit, urlunsplit

from stackcascade.runner.process import run_process
from stackcascade.runner.types import GitAuth, ProcessResult, RunContext, SourceSpec, StepFailed

_ASKPASS = """#!/bin/sh
# git asks "Username for ..." and "Password for ...": answer from the environment, never from argv.
case "$1" in
  [Uu]sername*) printf '%s\\n' "$CASCADE_GIT_USERNAME" ;;
  *) printf '%s\\n' "$CASCADE_GIT_PASSWORD" ;;
esac
"""
_SSH_ASKPASS = """#!/bin/sh
printf '%s\\n' "$CASCADE_SSH_PASSPHRASE"
"""
_SCP_LIKE = re.compile(r"^(?:[^@/:\s]+@)?[^@/:\s]+:(?!//)")
_COMMIT = re.compile(r"^[0-9a-fA-F]{4,64}$")
_FULL_HASH = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_ORIGIN_MARK = "cascade-cloned-from"  # in .git: the URL the workspace was cloned from
_REMOTE_HEADS = "+refs/heads/*:refs/remotes/origin/*"
TOKEN_USERNAME = "x-access-token"  # noqa: S105 - the user name GitHub-style token auth expects
# A plain directory this small (and a workspace this small to empty) is copied on the event loop: a
# few files take well under a millisecond, less than handing the work to a thread and back, which
# costs milliseconds while the loop is busy. Anything larger is copied in a thread.
_INLINE_COPY_ENTRIES = 64
_INLINE_COPY_BYTES = 256 * 1024


async def fetch_source(spec: SourceSpec, *, workspace: Path, ctx: RunContext) -> Path:
    """Fetch ``spec`` into ``workspace`` and return the project directory (``workspace/repoDir``)."""
    relative = _relative_repo_dir(spec.repo_dir)
    workspace.mkdir(parents=True, exist_ok=True)
    source = _classify(spec.repo_url)
    if isinstance(source, Path):
        await _copy_directory(source, workspace, ctx)
    else:
        await _GitCheckout(spec, source, workspace, ctx).run()
    return _project_dir(workspace, relative, spec.repo_dir)


@dataclass(frozen=True, slots=True)
class _GitSource:
    url: str  # what git is given: credentials removed
    display: str  # what messages name
    embedded: tuple[str, str] | None = None  # user and password that were in the URL


def _classify(repo_url: str) -> Path | _GitSource:
    """A plain local directory (Path) or a git source (remote URL, local repository, file:// repository)."""
    url = repo_url.strip()
    if not url:
        raise StepFailed("no repoUrl given")
    local: Path | None = None
    if url.startswith("file://"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise StepFailed(f"unsupported file URL '{url}': only local paths are supported")
        local = Path(unquote(parts.path))
    elif os.path.isabs(url):
        local = Path(url)
    if local is not None:
        if not local.exists():
            raise StepFailed(f"source path {local} does not exist")
        if _is_git_repository(local):
            return _GitSource(url=url, display=url)
        if not local.is_dir():
            raise StepFailed(f"source path {local} is not a directory")
        return local
    if "://" in url:
        parts = urlsplit(url)
        if parts.username is None and parts.password is None:
            return _GitSource(url=url, display=url)
        host = parts.netloc.rpartition("@")[2]
        clean = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
        embedded = (unquote(parts.username or ""), unquote(parts.password or ""))
        return _GitSource(url=clean, display=clean, embedded=embedded)
    if _SCP_LIKE.match(url):
        return _GitSource(url=url, display=url)
    raise StepFailed(f"unsupported repoUrl '{url}': expected a git URL, an absolute path or a file:// URL")


def _is_git_repository(path: Path) -> bool:
    # A work tree (.git directory or gitfile) or a bare repository.
    return (path / ".git").exists() or ((path / "HEAD").is_file() and (path / "objects").is_dir())


def _relative_repo_dir(repo_dir: str | None) -> PurePosixPath:
    if repo_dir is None or repo_dir.strip() in ("", "."):
        return PurePosixPath(".")
    relative = PurePosixPath(repo_dir.strip())
    if relative.is_absolute() or ".." in relative.parts:
        raise StepFailed(f"repoDir '{repo_dir}' escapes the repository")
    return relative


def _project_dir(workspace: Path, relative: PurePosixPath, repo_dir: str | None) -> Path:
    root = workspace.resolve()
    target = (root / relative).resolve()
    if not target.is_relative_to(root):  # a symlink inside the repository pointing out of it
        raise StepFailed(f"repoDir '{repo_dir}' escapes the repository")
    if not target.is_dir():
        raise StepFailed(f"repoDir '{repo_dir}' does not exist in the repository")
    return target


def _empty_directory(directory: Path) -> None:
    for child in directory.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


async def _copy_directory(source: Path, workspace: Path, ctx: RunContext) -> None:
    """A plain directory is copied fresh each time (symlinks kept as links, never followed)."""
    if workspace.resolve().is_relative_to(source.resolve()):
        raise StepFailed(f"source path {source} contains the workspace")
    await ctx.on_line(f"copying {source} into the workspace")

    def copy() -> None:
        _empty_directory(workspace)
        shutil.copytree(source, workspace, symlinks=True, dirs_exist_ok=True)

    try:
        if _is_small(source) and _is_small(workspace):
            copy()
        else:
            await asyncio.to_thread(copy)
    except OSError as exc:
        raise StepFailed(f"copying {source} failed: {exc.strerror or exc}") from exc


def _is_small(directory: Path) -> bool:
    """At most ``_INLINE_COPY_ENTRIES`` entries and ``_INLINE_COPY_BYTES`` of files; stops looking early."""
    pending = [directory]
    entries = size = 0
    try:
        while pending:
            with os.scandir(pending.pop()) as listing:
                for entry in listing:
                    entries += 1
                    if entries > _INLINE_COPY_ENTRIES:
                        return False
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(Path(entry.path))
                    elif entry.is_file(follow_symlinks=False):
                        size += entry.stat(follow_symlinks=False).st_size
                        if size > _INLINE_COPY_BYTES:
                            return False
    except OSError:
        return False  # the copy in a thread reports it
    return True


class _GitCheckout:
    """Clone or fetch, then check out the wanted commit detached, with a clean work tree.

    A warm deployment spawns as few git processes as it can (each costs milliseconds of CPU, and a
    cascade runs hundreds of deployments): the cached clone is recognised by a mark file instead of
    ``git config``, the fetch names the URL and refspec itself (so nothing a deployment did to the
    workspace's ``remote.origin`` config changes where it fetches from), skips the automatic
    maintenance child, and a branch is checked out by name, its commit read back from ``.git/HEAD``.
    """

    def __init__(self, spec: SourceSpec, source: _GitSource, workspace: Path, ctx: RunContext) -> None:
        self.spec = spec
        self.source = source
        self.workspace = workspace
        self.ctx = ctx
        self.git = shutil.which("git", path=ctx.env.get("PATH", os.defpath))
        self.env: dict[str, str] = {}
        self.config: list[str] = []

    async def run(self) -> None:
        if self.git is None:
            raise StepFailed("git is not installed on this runner")
        if self.spec.commit and not _COMMIT.match(self.spec.commit):
            raise StepFailed(f"commit '{self.spec.commit}' is not a commit hash")
        with _credentials(self.spec.auth, self.source.embedded) as (auth_env, uses_password):
            self.env = {**self.ctx.env, "GIT_TERMINAL_PROMPT": "0", **auth_env}
            # Our credentials must not be answered by, or stored into, a credential helper of the host.
            self.config = ["-c", "credential.helper="] if uses_password else []
            default_ref = "refs/remotes/origin/HEAD"  # what a fresh clone sets
            if await self._has_cached_clone():
                fetch = ["fetch", "--prune", "--force", "--no-auto-maintenance", "--no-write-fetch-head"]
                await self._checked(
                    [*fetch, "--", self.source.url, _REMOTE_HEADS], f"git fetch of {self.source.display}"
                )
                if not self.spec.commit and not self.spec.branch:
                    default_ref = await self._remote_default_ref()
            else:
                _empty_directory(self.workspace)
                await self._checked(
                    ["clone", "--no-checkout", "--", self.source.url, "."], f"git clone of {self.source.display}"
                )
                (self.workspace / ".git" / _ORIGIN_MARK).write_text(self.source.url, encoding="utf-8")
            sha, what = await self._check_out(default_ref)
            await self._checked(["clean", "-ffdx"], "git clean")
            await self.ctx.on_line(f"checked out {sha} ({what})")

    async def _has_cached_clone(self) -> bool:
        if not (self.workspace / ".git").is_dir():
            return False
        try:
            cloned_from = (self.workspace / ".git" / _ORIGIN_MARK).read_text(encoding="utf-8")
        except OSError:
            cloned_from = None  # a workspace from before the mark, or damaged: start afresh
        same = cloned_from == self.source.url
        if not same:
            await self.ctx.on_line(f"the cached clone is not of {self.source.display}: cloning again")
        return same

    async def _remote_default_ref(self) -> str:
        """The remote-tracking ref of the remote's current default branch (it may have changed)."""
        result, lines = await self._git(["ls-remote", "--symref", "--", self.source.url, "HEAD"], capture=True)
        if result.stopped:
            raise StepFailed(result.stopped)
        for line in lines if result.exit_code == 0 else ():
            target, _, name = line.partition("\t")
            if name.strip() == "HEAD" and target.startswith("ref: refs/heads/"):
                return "refs/remotes/origin/" + target.removeprefix("ref: refs/heads/")
        raise StepFailed(
            f"could not determine the default branch of {self.source.display} (is it empty?); set a branch"
        )

    async def _check_out(self, default_ref: str) -> tuple[str, str]:
        """Check out the wanted commit; the commit wins when both a commit and a branch are given."""
        display = self.source.display
        if self.spec.commit:
            commit = self.spec.commit
            sha = await self._rev_parse(f"{commit}^{{commit}}")
            if sha is None:  # not on any branch head: ask the remote for it directly
                await self._git(["fetch", "--no-auto-maintenance", "--", self.source.url, commit])
                sha = await self._rev_parse(f"{commit}^{{commit}}")
            if sha is None:
                raise StepFailed(f"commit '{commit}' not found in {display}")
            await self._checked(["checkout", "--force", "--detach", sha, "--"], f"git checkout of {sha[:12]}")
            return sha, f"commit {commit}"
        if self.spec.branch:
            branch = self.spec.branch.removeprefix("refs/heads/")
            ref, what = f"refs/remotes/origin/{branch}", f"branch {branch}"
            missing = f"branch '{branch}' not found in {display}"
        else:
            ref, what = default_ref, "default branch"
            missing = f"could not determine the default branch of {display} (is it empty?); set a branch"
        result, _ = await self._git(["checkout", "--force", "--detach", ref, "--"])
        if result.stopped:
            raise StepFailed(result.stopped)
        if result.exit_code != 0:
            if await self._rev_parse(f"{ref}^{{commit}}") is None:
                raise StepFailed(missing)
            raise StepFailed(f"git checkout of {what} failed (exit {result.exit_code})")
        return await self._head(), what

    async def _head(self) -> str:
        """The commit just checked out: a detached HEAD file holds it, no process needed."""
        try:
            content = (self.workspace / ".git" / "HEAD").read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            content = ""
        if _FULL_HASH.match(content):
            return content
        sha = await self._rev_parse("HEAD^{commit}")
        if sha is None:
            raise StepFailed("git checkout left no commit checked out")
        return sha

    async def _rev_parse(self, revision: str) -> str | None:
        result, lines = await self._git(["rev-parse", "--verify", "--quiet", revision], capture=True)
        if result.stopped:
            raise StepFailed(result.stopped)
        if result.exit_code != 0 or not lines:
            return None
        return lines[0].strip()

    async def _checked(self, args: list[str], what: str) -> None:
        result, _ = await self._git(args)
        if result.stopped:
            raise StepFailed(result.stopped)
        if result.exit_code != 0:
            raise StepFailed(f"{what} failed (exit {result.exit_code})")

    async def _git(self, args: list[str], *, capture: bool = False) -> tuple[ProcessResult, list[str]]:
        """Run git in the workspace; its output streams into the step log unless captured."""
        assert self.git is not None
        argv = [self.git, *self.config, *args]
        captured: list[str] = []
        ctx = dataclasses.replace(self.ctx, env=self.env)
        if capture:

            async def keep(line: str) -> None:
                captured.append(line)

            ctx.on_line = keep
        else:
            await self.ctx.on_line("$ " + shlex.join(["git", *args]))
        result = await run_process("", cwd=self.workspace, ctx=ctx, argv=argv)
        return result, captured


@contextmanager
def _credentials(auth: GitAuth | None, embedded: tuple[str, str] | None) -> Iterator[tuple[dict[str, str], bool]]:
    """Environment for git carrying the credentials, plus whether a user name/password is in use."""
    username: str | None = None
    password: str | None = None
    if auth is not None and auth.access_token:
        username, password = auth.username or TOKEN_USERNAME, auth.access_token
    elif auth is not None and (auth.username or auth.password):
        username, password = auth.username or "", auth.password or ""
    elif embedded is not None:
        username, password = embedded
    ssh_key = auth.ssh_private_key if auth is not None else None
    if username is None and not ssh_key:
        yield {}, False
        return
    directory = Path(tempfile.mkdtemp(prefix="cascade-git-"))  # mode 0700
    try:
        env: dict[str, str] = {}
        if username is not None:
            env["GIT_ASKPASS"] = str(_write_private(directory / "askpass", _ASKPASS, 0o700))
            env["CASCADE_GIT_USERNAME"] = username
            env["CASCADE_GIT_PASSWORD"] = password or ""
        if ssh_key:
            key = ssh_key if ssh_key.endswith("\n") else ssh_key + "\n"
            key_file = _write_private(directory / "id_key", key, 0o600)
            env["GIT_SSH_COMMAND"] = (
                f"ssh -i {shlex.quote(str(key_file))} -o IdentitiesOnly=yes -o StrictHostKeyChecking=accept-new"
            )
            if auth is not None and auth.ssh_passphrase:
                env["SSH_ASKPASS"] = str(_write_private(directory / "ssh-askpass", _SSH_ASKPASS, 0o700))
                env["SSH_ASKPASS_REQUIRE"] = "force"
                env["CASCADE_SSH_PASSPHRASE"] = auth.ssh_passphrase
        yield env, username is not None
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _write_private(path: Path, content: str, mode: int) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(content)
    os.chmod(path, mode)  # the umask may have removed bits we need (the helpers must be executable)
    return path
