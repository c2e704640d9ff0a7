"""fetch_source against real git repositories made in tmp_path (and a local HTTP git server for auth)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stackcascade.runner import workspace as workspace_module
from stackcascade.runner.process import run_process
from stackcascade.runner.types import GitAuth, ProcessResult, RunContext, SourceSpec, StepFailed
from stackcascade.runner.workspace import fetch_source
from tests.runner.githttp import GitHTTPServer
from tests.runner.helpers import Log, make_context, python_bin


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }


class Repo:
    """A git repository to fetch from, driven synchronously by the test."""

    def __init__(self, path: Path, env: dict[str, str]) -> None:
        self.path = path
        self.env = env
        path.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        done = subprocess.run(["git", *args], cwd=self.path, env=self.env, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    def commit(self, files: dict[str, str], message: str = "change") -> str:
        for name, content in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")


@pytest.fixture
def make_repo(tmp_path: Path, env: dict[str, str]) -> Callable[[str], Repo]:
    return lambda name: Repo(tmp_path / name, env)


@pytest.fixture
def origin(make_repo: Callable[[str], Repo]) -> Repo:
    repo = make_repo("origin")
    repo.commit({"Pulumi.yaml": "name: app\n", "version.txt": "one\n", "infra/main.tf": "# tf\n"}, "first")
    return repo


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return tmp_path / "workspaces" / "org" / "project" / "stack"


def head(path: Path, env: dict[str, str]) -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


async def test_first_fetch_clones_the_default_branch(origin: Repo, workspace: Path, env: dict[str, str]) -> None:
    log = Log()
    project = await fetch_source(
        SourceSpec(repo_url=str(origin.path)), workspace=workspace, ctx=make_context(env, log=log)
    )
    assert project == workspace.resolve()
    assert (project / "version.txt").read_text() == "one\n"
    assert head(workspace, env) == origin.git("rev-parse", "HEAD")
    assert any(line.startswith("$ git clone") for line in log.lines)
    assert "Cloning into '.'..." in log.lines  # git's own output streams into the step log


async def test_a_cached_clone_is_fetched_and_cleaned(origin: Repo, workspace: Path, env: dict[str, str]) -> None:
    origin.commit({".gitignore": "node_modules/\n"}, "ignore")
    spec = SourceSpec(repo_url=origin.path.as_uri())
    await fetch_source(spec, workspace=workspace, ctx=make_context(env))
    (workspace / "junk.txt").write_text("left over by the last deployment")
    (workspace / "version.txt").write_text("edited in the workspace")
    (workspace / "node_modules").mkdir()
    (workspace / "node_modules" / "ignored.js").write_text("ignored, removed all the same")
    second = origin.commit({"version.txt": "two\n"}, "second")

    log = Log()
    project = await fetch_source(spec, workspace=workspace, ctx=make_context(env, log=log))
    assert (project / "version.txt").read_text() == "two\n"
    assert head(workspace, env) == second
    assert not (workspace / "junk.txt").exists()
    assert not (workspace / "node_modules").exists()
    assert any(line.startswith("$ git fetch") for line in log.lines)
    assert not any(line.startswith("$ git clone") for line in log.lines)


async def test_branch_and_commit_checkout(origin: Repo, workspace: Path, env: dict[str, str]) -> None:
    first = origin.git("rev-parse", "HEAD")
    origin.git("checkout", "-q", "-b", "feature")
    feature = origin.commit({"version.txt": "feature\n"}, "on feature")
    origin.git("checkout", "-q", "main")
    origin.commit({"version.txt": "main two\n"}, "on main")
    url = str(origin.path)

    project = await fetch_source(SourceSpec(repo_url=url, branch="feature"), workspace=workspace, ctx=make_context(env))
    assert (project / "version.txt").read_text() == "feature\n"
    assert head(workspace, env) == feature

    project = await fetch_source(
        SourceSpec(repo_url=url, branch="refs/heads/main"), workspace=workspace, ctx=make_context(env)
    )
    assert (project / "version.txt").read_text() == "main two\n"

    # A commit wins over a branch, and a short hash is enough.
    project = await fetch_source(
        SourceSpec(repo_url=url, branch="feature", commit=first[:10]), workspace=workspace, ctx=make_context(env)
    )
    assert (project / "version.txt").read_text() == "one\n"
    assert head(workspace, env) == first


async def test_the_default_branch_follows_the_remote(origin: Repo, workspace: Path, env: dict[str, str]) -> None:
    await fetch_source(SourceSpec(repo_url=str(origin.path)), workspace=workspace, ctx=make_context(env))
    origin.git("checkout", "-q", "-b", "trunk")
    origin.commit({"version.txt": "trunk\n"}, "trunk")  # origin's HEAD now points at trunk
    project = await fetch_source(SourceSpec(repo_url=str(origin.path)), workspace=workspace, ctx=make_context(env))
    assert (project / "version.txt").read_text() == "trunk\n"


async def test_a_changed_repository_url_clones_again(
    origin: Repo, make_repo: Callable[[str], Repo], workspace: Path, env: dict[str, str]
) -> None:
    other = make_repo("other")
    other.commit({"Cascade.yaml": "operations: {}\n"}, "other")
    await fetch_source(SourceSpec(repo_url=str(origin.path)), workspace=workspace, ctx=make_context(env))
    log = Log()
    project = await fetch_source(
        SourceSpec(repo_url=str(other.path)), workspace=workspace, ctx=make_context(env, log=log)
    )
    assert (project / "Cascade.yaml").exists()
    assert not (project / "Pulumi.yaml").exists()
    assert any(line.startswith("$ git clone") for line in log.lines)


def git_recorder(directory: Path, record: Path) -> Path:
    """A ``git`` first on PATH that writes each invocation's arguments to ``record``, then runs the real git."""
    directory.mkdir(parents=True, exist_ok=True)
    shim = directory / "git"
    shim.write_text(f'#!/bin/sh\necho "$*" >> {record}\nexec {shutil.which("git")} "$@"\n')
    shim.chmod(0o755)
    return directory


async def test_a_warm_branch_deployment_runs_three_git_commands(
    origin: Repo, workspace: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    record = tmp_path / "git-calls"
    recorded = {**env, "PATH": f"{git_recorder(tmp_path / 'shim', record)}:{env['PATH']}"}
    spec = SourceSpec(repo_url=origin.path.as_uri(), branch="main")
    await fetch_source(spec, workspace=workspace, ctx=make_context(recorded))
    record.unlink()
    second = origin.commit({"version.txt": "two\n"}, "second")

    await fetch_source(spec, workspace=workspace, ctx=make_context(recorded))
    calls = record.read_text().splitlines()
    # Every git process costs milliseconds of CPU per deployment; none runs that is not needed (no
    # `git config`, no `rev-parse`, no automatic maintenance after the fetch).
    assert [call.split()[0] for call in calls] == ["fetch", "checkout", "clean"]
    assert "--no-auto-maintenance" in calls[0].split()
    assert head(workspace, env) == second


async def test_the_fetch_ignores_what_a_deployment_did_to_the_remote_config(
    origin: Repo, make_repo: Callable[[str], Repo], workspace: Path, env: dict[str, str]
) -> None:
    other = make_repo("other")
    other.commit({"version.txt": "other\n"}, "other")
    spec = SourceSpec(repo_url=str(origin.path), branch="main")
    await fetch_source(spec, workspace=workspace, ctx=make_context(env))
    # A deployment's command runs in the workspace and may rewrite its git configuration.
    subprocess.run(["git", "remote", "set-url", "origin", str(other.path)], cwd=workspace, env=env, check=True)
    second = origin.commit({"version.txt": "two\n"}, "second")

    project = await fetch_source(spec, workspace=workspace, ctx=make_context(env))
    assert (project / "version.txt").read_text() == "two\n"
    assert head(workspace, env) == second


async def test_a_workspace_without_the_clone_mark_clones_again(
    origin: Repo, workspace: Path, env: dict[str, str]
) -> None:
    spec = SourceSpec(repo_url=str(origin.path))
    await fetch_source(spec, workspace=workspace, ctx=make_context(env))
    (workspace / ".git" / workspace_module._ORIGIN_MARK).unlink()  # as a workspace made by an older runner
    log = Log()
    project = await fetch_source(spec, workspace=workspace, ctx=make_context(env, log=log))
    assert (project / "version.txt").read_text() == "one\n"
    assert any(line.startswith("$ git clone") for line in log.lines)


async def test_repo_dir(origin: Repo, workspace: Path, env: dict[str, str]) -> None:
    project = await fetch_source(
        SourceSpec(repo_url=str(origin.path), repo_dir="infra"), workspace=workspace, ctx=make_context(env)
    )
    assert project == workspace.resolve() / "infra"
    with pytest.raises(StepFailed) as missing:
        await fetch_source(
            SourceSpec(repo_url=str(origin.path), repo_dir="x"), workspace=workspace, ctx=make_context(env)
        )
    assert missing.value.reason == "repoDir 'x' does not exist in the repository"


@pytest.mark.parametrize("repo_dir", ["../outside", "infra/../../outside", "/etc"])
async def test_repo_dir_cannot_escape(origin: Repo, workspace: Path, env: dict[str, str], repo_dir: str) -> None:
    log = Log()
    with pytest.raises(StepFailed) as failed:
        await fetch_source(
            SourceSpec(repo_url=str(origin.path), repo_dir=repo_dir),
            workspace=workspace,
            ctx=make_context(env, log=log),
        )
    assert failed.value.reason == f"repoDir '{repo_dir}' escapes the repository"
    assert log.lines == []  # refused before fetching anything


async def test_repo_dir_cannot_escape_through_a_symlink(
    origin: Repo, workspace: Path, env: dict[str, str], tmp_path: Path
) -> None:
    (origin.path / "sneaky").symlink_to(tmp_path)
    origin.commit({}, "symlink out")
    with pytest.raises(StepFailed) as failed:
        await fetch_source(
            SourceSpec(repo_url=str(origin.path), repo_dir="sneaky"), workspace=workspace, ctx=make_context(env)
        )
    assert failed.value.reason == "repoDir 'sneaky' escapes the repository"


async def test_unknown_branch_and_commit(origin: Repo, workspace: Path, env: dict[str, str]) -> None:
    url = str(origin.path)
    with pytest.raises(StepFailed) as branch:
        await fetch_source(SourceSpec(repo_url=url, branch="nope"), workspace=workspace, ctx=make_context(env))
    assert branch.value.reason == f"branch 'nope' not found in {url}"
    with pytest.raises(StepFailed) as commit:
        await fetch_source(SourceSpec(repo_url=url, commit="deadbeef" * 5), workspace=workspace, ctx=make_context(env))
    assert commit.value.reason == f"commit '{'deadbeef' * 5}' not found in {url}"
    with pytest.raises(StepFailed) as bad:
        await fetch_source(
            SourceSpec(repo_url=url, commit="--upload-pack=x"), workspace=workspace, ctx=make_context(env)
        )
    assert bad.value.reason == "commit '--upload-pack=x' is not a commit hash"


async def test_a_failing_clone_names_the_url_without_credentials(workspace: Path, env: dict[str, str]) -> None:
    log = Log()
    url = "http://someone:hunter2@127.0.0.1:9/nothing.git"  # port 9 (discard): connection refused
    with pytest.raises(StepFailed) as failed:
        await fetch_source(SourceSpec(repo_url=url), workspace=workspace, ctx=make_context(env, log=log))
    assert failed.value.reason == "git clone of http://127.0.0.1:9/nothing.git failed (exit 128)"
    assert "hunter2" not in log.text


async def test_bad_sources(tmp_path: Path, workspace: Path, env: dict[str, str]) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(StepFailed) as absent:
        await fetch_source(SourceSpec(repo_url=missing.as_uri()), workspace=workspace, ctx=make_context(env))
    assert absent.value.reason == f"source path {missing} does not exist"
    with pytest.raises(StepFailed) as relative:
        await fetch_source(SourceSpec(repo_url="relative/dir"), workspace=workspace, ctx=make_context(env))
    assert relative.value.reason.startswith("unsupported repoUrl 'relative/dir'")


async def test_git_missing_on_the_runner(origin: Repo, workspace: Path, tmp_path: Path, env: dict[str, str]) -> None:
    no_git = {**env, "PATH": str(tmp_path / "empty-bin")}
    with pytest.raises(StepFailed) as failed:
        await fetch_source(SourceSpec(repo_url=str(origin.path)), workspace=workspace, ctx=make_context(no_git))
    assert failed.value.reason == "git is not installed on this runner"


async def test_a_plain_directory_is_copied_fresh(tmp_path: Path, workspace: Path, env: dict[str, str]) -> None:
    source = tmp_path / "plain"
    (source / "sub").mkdir(parents=True)
    (source / "Cascade.yaml").write_text("operations: {}\n")
    (source / "sub" / "a.txt").write_text("a")
    (source / "link").symlink_to("sub/a.txt")

    project = await fetch_source(
        SourceSpec(repo_url=str(source), repo_dir="sub"), workspace=workspace, ctx=make_context(env)
    )
    assert project == workspace.resolve() / "sub"
    assert (project / "a.txt").read_text() == "a"
    assert (workspace / "link").is_symlink()

    (source / "sub" / "a.txt").unlink()
    (source / "sub" / "b.txt").write_text("b")
    await fetch_source(SourceSpec(repo_url=source.as_uri()), workspace=workspace, ctx=make_context(env))
    assert sorted(path.name for path in (workspace / "sub").iterdir()) == ["b.txt"]


@pytest.mark.parametrize("files", [1, 200], ids=["small-copied-inline", "large-copied-in-a-thread"])
async def test_every_copy_sees_the_current_content(
    tmp_path: Path, workspace: Path, env: dict[str, str], files: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    inline: list[bool] = []
    real_to_thread = workspace_module.asyncio.to_thread

    async def to_thread(func: Any, /, *args: Any) -> Any:
        inline.append(False)
        return await real_to_thread(func, *args)

    monkeypatch.setattr(workspace_module.asyncio, "to_thread", to_thread)
    source = tmp_path / "plain"
    source.mkdir()
    for number in range(files):
        (source / f"f{number}.txt").write_text("aaaa")
    spec = SourceSpec(repo_url=str(source))
    await fetch_source(spec, workspace=workspace, ctx=make_context(env))
    (workspace / "left-by-the-last-run").write_text("x")
    (source / "f0.txt").write_text("bbbb")  # same size, written right after the copy
    await fetch_source(spec, workspace=workspace, ctx=make_context(env))
    assert (workspace / "f0.txt").read_text() == "bbbb"
    assert not (workspace / "left-by-the-last-run").exists()
    assert len(list(workspace.iterdir())) == files
    assert inline == ([] if files == 1 else [False, False])


class Recorded:
    """Wraps run_process to see every git invocation's argv and environment."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], dict[str, str]]] = []

    async def __call__(
        self, command: str, *, cwd: Path, ctx: RunContext, argv: list[str] | None = None
    ) -> ProcessResult:
        assert argv is not None  # git always runs as argv, never through a shell
        self.calls.append((argv, dict(ctx.env)))
        if "GIT_ASKPASS" in ctx.env:  # the helper must be private and working while git runs
            helper = Path(ctx.env["GIT_ASKPASS"])
            assert stat.S_IMODE(helper.parent.stat().st_mode) == 0o700
            assert stat.S_IMODE(helper.stat().st_mode) == 0o700
        return await run_process(command, cwd=cwd, ctx=ctx, argv=argv)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Recorded:
    recorder = Recorded()
    monkeypatch.setattr(workspace_module, "run_process", recorder)
    return recorder


@pytest.fixture
def git_server(tmp_path: Path, origin: Repo, env: dict[str, str]) -> Any:
    served = tmp_path / "served"
    served.mkdir()
    subprocess.run(["git", "clone", "-q", "--bare", str(origin.path), str(served / "app.git")], env=env, check=True)
    with GitHTTPServer(served, "x-access-token", "tok-ABC-123") as server:
        yield server


async def test_token_auth_over_http_keeps_the_token_out_of_argv_logs_and_disk(
    git_server: GitHTTPServer, recorded: Recorded, workspace: Path, env: dict[str, str]
) -> None:
    token = "tok-ABC-123"
    log = Log()
    spec = SourceSpec(repo_url=git_server.url("app.git"), auth=GitAuth(access_token=token))
    project = await fetch_source(spec, workspace=workspace, ctx=make_context(env, log=log))
    assert (project / "version.txt").read_text() == "one\n"
    assert f"x-access-token:{token}" in git_server.seen  # the server really required and got it
    assert recorded.calls
    for argv, _ in recorded.calls:
        assert not any(token in arg for arg in argv)
    assert token not in log.text
    assert token not in (workspace / ".git" / "config").read_text()
    helpers = {call_env["GIT_ASKPASS"] for _, call_env in recorded.calls}
    assert all(not Path(helper).parent.exists() for helper in helpers)  # removed afterwards

    # A cached fetch authenticates the same way.
    await fetch_source(spec, workspace=workspace, ctx=make_context(env, log=log))
    fetches = [call_env for argv, call_env in recorded.calls if "fetch" in argv]
    assert fetches
    assert all(call_env["CASCADE_GIT_PASSWORD"] == token for call_env in fetches)


async def test_a_wrong_token_fails_clearly(git_server: GitHTTPServer, workspace: Path, env: dict[str, str]) -> None:
    log = Log()
    spec = SourceSpec(repo_url=git_server.url("app.git"), auth=GitAuth(access_token="wrong-token-987"))
    with pytest.raises(StepFailed) as failed:
        await fetch_source(spec, workspace=workspace, ctx=make_context(env, log=log, timeout=30))
    assert failed.value.reason == f"git clone of {git_server.url('app.git')} failed (exit 128)"
    assert "wrong-token-987" not in log.text


async def test_credentials_in_the_url_are_moved_out_of_it(
    git_server: GitHTTPServer, recorded: Recorded, workspace: Path, env: dict[str, str]
) -> None:
    clean = git_server.url("app.git")
    with_credentials = clean.replace("http://", "http://x-access-token:tok-ABC-123@")
    log = Log()
    await fetch_source(SourceSpec(repo_url=with_credentials), workspace=workspace, ctx=make_context(env, log=log))
    assert "tok-ABC-123" not in log.text
    assert all("tok-ABC-123" not in arg for argv, _ in recorded.calls for arg in argv)
    assert "tok-ABC-123" not in (workspace / ".git" / "config").read_text()


async def test_basic_auth_username_and_password(
    tmp_path: Path, origin: Repo, workspace: Path, env: dict[str, str]
) -> None:
    served = tmp_path / "served-basic"
    served.mkdir()
    subprocess.run(["git", "clone", "-q", "--bare", str(origin.path), str(served / "app.git")], env=env, check=True)
    with GitHTTPServer(served, "alice", "pa:ss w0rd") as server:
        spec = SourceSpec(repo_url=server.url("app.git"), auth=GitAuth(username="alice", password="pa:ss w0rd"))
        project = await fetch_source(spec, workspace=workspace, ctx=make_context(env))
    assert (project / "Pulumi.yaml").exists()
    assert "alice:pa:ss w0rd" in server.seen


FAKE_SSH = """#!/usr/bin/env python3
# Records how git invoked ssh (and the key file it was given), then runs the remote command locally.
import json, os, stat, subprocess, sys
args = sys.argv[1:]
key = args[args.index("-i") + 1]
record = {"args": args, "key": open(key).read(), "mode": stat.S_IMODE(os.stat(key).st_mode), "key_path": key}
if os.environ.get("SSH_ASKPASS"):
    record["passphrase"] = subprocess.run([os.environ["SSH_ASKPASS"], "Enter passphrase"], capture_output=True, text=True).stdout
with open(os.environ["FAKE_SSH_LOG"], "a") as handle:
    handle.write(json.dumps(record) + "\\n")
os.execvp("sh", ["sh", "-c", args[-1]])
"""


async def test_ssh_key_auth_uses_a_private_key_file_removed_afterwards(
    tmp_path: Path, origin: Repo, workspace: Path, env: dict[str, str], recorded: Recorded
) -> None:
    fake_bin = tmp_path / "ssh-bin"
    fake_bin.mkdir()
    (fake_bin / "ssh").write_text(FAKE_SSH)
    (fake_bin / "ssh").chmod(0o755)
    python_bin(fake_bin)
    ssh_log = tmp_path / "ssh.log"
    ssh_env = {**env, "PATH": f"{fake_bin}{os.pathsep}{env['PATH']}", "FAKE_SSH_LOG": str(ssh_log)}
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAkeymaterial\n-----END OPENSSH PRIVATE KEY-----"
    log = Log()
    spec = SourceSpec(
        repo_url=f"ssh://git@example.invalid{origin.path}",
        auth=GitAuth(ssh_private_key=key, ssh_passphrase="open sesame"),
    )
    project = await fetch_source(spec, workspace=workspace, ctx=make_context(ssh_env, log=log))
    assert (project / "version.txt").read_text() == "one\n"
    records = [json.loads(line) for line in ssh_log.read_text().splitlines()]
    assert records
    for record in records:
        assert record["key"] == key + "\n"
        assert record["mode"] == 0o600
        assert "IdentitiesOnly=yes" in record["args"]
        assert "StrictHostKeyChecking=accept-new" in record["args"]
        assert record["passphrase"] == "open sesame\n"
        assert not Path(record["key_path"]).exists()
    assert "AAAAkeymaterial" not in log.text
    assert "open sesame" not in log.text
    assert all("AAAAkeymaterial" not in arg and "open sesame" not in arg for argv, _ in recorded.calls for arg in argv)
