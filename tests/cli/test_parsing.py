"""Pure helpers of the CLI, without a server: references, KEY=VALUE pairs, settings documents, URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackcascade.cli.client import api_path
from stackcascade.cli.connection import normalise_server
from stackcascade.cli.documents import SettingsFlags, apply_flags, deployment_request, flatten_settings, load_document
from stackcascade.cli.errors import CliError
from stackcascade.cli.refs import StackRef, parse_pairs, parse_stack_ref


def test_full_stack_reference_ignores_the_default_org() -> None:
    assert parse_stack_ref("acme/net/prod", "other") == StackRef("acme", "net", "prod")


def test_project_stack_reference_uses_the_default_org() -> None:
    ref = parse_stack_ref("net/prod", "acme")
    assert ref == StackRef("acme", "net", "prod")
    assert str(ref) == "acme/net/prod"


def test_project_stack_reference_without_a_default_org_says_how_to_set_one() -> None:
    with pytest.raises(CliError, match=r"has no organization.*--org, CASCADE_ORG"):
        parse_stack_ref("net/prod", None)


@pytest.mark.parametrize("text", ["prod", "a/b/c/d", "acme//prod", "/net/prod", "acme/net/", ""])
def test_malformed_stack_reference_is_refused(text: str) -> None:
    with pytest.raises(CliError, match="invalid stack"):
        parse_stack_ref(text, "acme")


@pytest.mark.parametrize("text", ["acme/net/pr od", "acme/.hidden/prod", "acme/net/x?y=1", "../net/prod"])
def test_stack_names_follow_the_server_rules(text: str) -> None:
    with pytest.raises(CliError, match=r"invalid (stack|project|organization|stack name)"):
        parse_stack_ref(text, None)


def test_pairs_split_at_the_first_equals_sign() -> None:
    assert parse_pairs(["A=1", "URL=http://x/?q=a=b", "EMPTY="], "--env") == {
        "A": "1",
        "URL": "http://x/?q=a=b",
        "EMPTY": "",
    }


@pytest.mark.parametrize("item", ["NOVALUE", "=value"])
def test_pair_without_a_key_is_refused_with_the_option_name(item: str) -> None:
    with pytest.raises(CliError, match="--env expects KEY=VALUE"):
        parse_pairs([item], "--env")


def test_a_malformed_secret_pair_is_not_echoed() -> None:
    with pytest.raises(CliError) as caught:
        parse_pairs(["hunter2-typed-without-key"], "--secret-env", secret=True)
    assert "hunter2" not in caught.value.message
    assert "--secret-env expects KEY=VALUE" in caught.value.message


def test_a_key_given_twice_is_an_error_not_a_silent_override() -> None:
    with pytest.raises(CliError, match="--tag team is given twice"):
        parse_pairs(["team=a", "team=b"], "--tag")


def test_flags_build_the_settings_shape_with_secrets_wrapped() -> None:
    flags = SettingsFlags(
        repo_url="https://example.com/r.git",
        branch="main",
        repo_dir="infra",
        env={"REGION": "eu"},
        secret_env={"TOKEN": "s3"},
        pre_run=("make deps", "make check"),
        shell="sh",
        skip_intermediate=False,
    )
    assert apply_flags({}, flags) == {
        "sourceContext": {"git": {"repoUrl": "https://example.com/r.git", "branch": "main", "repoDir": "infra"}},
        "operationContext": {
            "environmentVariables": {"REGION": "eu", "TOKEN": {"secret": "s3"}},
            "preRunCommands": ["make deps", "make check"],
            "options": {"shell": "sh", "skipIntermediateDeployments": False},
        },
    }


def test_flags_go_over_a_file_document_matching_keys_like_the_server() -> None:
    base = {"SourceContext": {"git": {"repoURL": "old", "branch": "dev"}}, "tag": "kept"}
    merged = apply_flags(base, SettingsFlags(repo_url="new"))
    assert merged == {"tag": "kept", "sourceContext": {"git": {"branch": "dev", "repoUrl": "new"}}}
    assert base["SourceContext"] == {"git": {"repoURL": "old", "branch": "dev"}}  # the input is not modified


def test_a_variable_cannot_be_both_plain_and_secret() -> None:
    with pytest.raises(CliError, match="TOKEN given both as --env and --secret-env"):
        apply_flags({}, SettingsFlags(env={"TOKEN": "a"}, secret_env={"TOKEN": "b"}))


def test_settings_flags_know_when_nothing_was_given() -> None:
    assert SettingsFlags().is_empty()
    assert not SettingsFlags(skip_intermediate=False).is_empty()
    assert not SettingsFlags(pre_run=("x",)).is_empty()


def test_deployment_request_carries_operation_inheritance_and_overrides() -> None:
    body = deployment_request("preview", inherit=False, flags=SettingsFlags(commit="abc123", env={"A": "1"}))
    assert body == {
        "operation": "preview",
        "inheritSettings": False,
        "sourceContext": {"git": {"commit": "abc123"}},
        "operationContext": {"environmentVariables": {"A": "1"}},
    }


def test_flattened_settings_mask_secrets_and_show_plain_values() -> None:
    settings = {
        "version": 3,
        "source": "api",
        "sourceContext": {
            "git": {"repoUrl": "r", "gitAuth": {"accessToken": {"secret": "[secret]", "ciphertext": "Z0FB"}}}
        },
        "operationContext": {
            "environmentVariables": {
                "PLAIN": {"secret": "", "plaintext": "visible"},
                "HIDDEN": {"secret": "[secret]", "ciphertext": "Z0FBQUFB"},
            },
            "preRunCommands": ["a", "b"],
            "options": {"skipIntermediateDeployments": True},
        },
    }
    assert flatten_settings(settings) == [
        ("sourceContext.git.repoUrl", "r"),
        ("sourceContext.git.gitAuth.accessToken", "[secret]"),
        ("operationContext.environmentVariables.PLAIN", "visible"),
        ("operationContext.environmentVariables.HIDDEN", "[secret]"),
        ("operationContext.preRunCommands[0]", "a"),
        ("operationContext.preRunCommands[1]", "b"),
        ("operationContext.options.skipIntermediateDeployments", "true"),
    ]


def test_settings_file_may_be_yaml_or_json(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("sourceContext:\n  git:\n    repoUrl: r\n")
    (tmp_path / "s.json").write_text('{"tag": "t"}')
    assert load_document(tmp_path / "s.yaml") == {"sourceContext": {"git": {"repoUrl": "r"}}}
    assert load_document(tmp_path / "s.json") == {"tag": "t"}


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.json", "{", "is not valid JSON"),
        ("bad.yaml", "a: [", "is not valid YAML"),
        ("list.yaml", "- a\n", "must hold"),
    ],
)
def test_unusable_settings_file_is_refused(tmp_path: Path, name: str, content: str, message: str) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(CliError, match=message):
        load_document(tmp_path / name)


def test_missing_settings_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CliError, match=r"cannot read .*nope\.yaml"):
        load_document(tmp_path / "nope.yaml")


def test_server_url_is_normalised_and_checked() -> None:
    assert normalise_server(" http://127.0.0.1:8080/ ") == "http://127.0.0.1:8080"
    assert normalise_server("https://ops.example.com/cascade") == "https://ops.example.com/cascade"
    for bad in (
        "127.0.0.1:8080",
        "ftp://host",
        "http://",
        "http://h/?x=1",
        "http://[::1",
        "http://h:abc",
        "http://h:99999",
    ):
        with pytest.raises(CliError, match="invalid server URL"):
            normalise_server(bad)


def test_api_paths_encode_each_segment_and_refuse_dot_segments() -> None:
    assert api_path("tokens", "a/b?c") == "/api/tokens/a%2Fb%3Fc"
    for bad in ("..", ".", ""):
        with pytest.raises(CliError, match="not a valid name or id"):
            api_path("tokens", bad)
