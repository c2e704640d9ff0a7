"""Deployment settings over real HTTP: merge-patch, replace, delete, versions and secrets."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from stackcascade.domain.settings import MASK, unwrap_ciphertext, wrap_ciphertext
from stackcascade.services.secrets import SecretBox, load_or_create_key
from tests.support import LiveServer, assert_error

REPO = "https://example.com/infra.git"


@pytest.fixture
def stack(admin: httpx2.Client, org: str) -> str:
    """A fresh stack; the value is its settings URL."""
    admin.post(f"/api/stacks/{org}/proj", json={"stackName": "dev"}).raise_for_status()
    return f"/api/stacks/{org}/proj/dev/deployments/settings"


@pytest.fixture
def server_box(live_server: LiveServer) -> SecretBox:
    """The server's own key, read from its data dir: used only to decrypt what it stored."""
    return SecretBox(load_or_create_key(None, live_server.data_dir))


def post(client: httpx2.Client, url: str, body: object) -> dict[str, Any]:
    response = client.post(url, json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def put(client: httpx2.Client, url: str, body: object) -> dict[str, Any]:
    response = client.put(url, json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def get(client: httpx2.Client, url: str) -> dict[str, Any]:
    response = client.get(url)
    assert response.status_code == 200, response.text
    return dict(response.json())


def body_of(settings: dict[str, Any]) -> dict[str, Any]:
    """The document without the response-only fields."""
    return {k: v for k, v in settings.items() if k not in {"version", "source"}}


def env(settings: dict[str, Any]) -> dict[str, Any]:
    return dict(settings["operationContext"]["environmentVariables"])


# --- read, create, delete ------------------------------------------------------------------------


def test_a_stack_without_settings_answers_404(admin: httpx2.Client, org: str, stack: str) -> None:
    assert_error(admin.get(stack), 404, f"stack {org}/proj/dev has no deployment settings")


def test_settings_of_a_missing_stack_answer_404(admin: httpx2.Client, org: str) -> None:
    url = f"/api/stacks/{org}/proj/nope/deployments/settings"
    for method in ("GET", "POST", "PUT", "DELETE"):
        response = admin.request(method, url, json={"tag": "x"} if method in {"POST", "PUT"} else None)
        assert_error(response, 404, f"stack {org}/proj/nope not found")


def test_post_creates_the_settings_and_get_returns_the_same(admin: httpx2.Client, stack: str) -> None:
    saved = post(
        admin,
        stack,
        {
            "sourceContext": {"git": {"repoUrl": REPO, "branch": "main", "repoDir": "net"}},
            "operationContext": {"preRunCommands": ["make deps"], "options": {"shell": "bash"}},
            "tag": "v1",
            "agentPoolID": "pool-1",
        },
    )
    assert saved["version"] == 1
    assert saved["source"] == "api"
    assert saved["sourceContext"] == {"git": {"repoUrl": REPO, "branch": "main", "repoDir": "net"}}
    assert saved["operationContext"] == {"preRunCommands": ["make deps"], "options": {"shell": "bash"}}
    assert (saved["tag"], saved["agentPoolID"]) == ("v1", "pool-1")
    assert get(admin, stack) == saved


def test_delete_answers_true_then_the_settings_are_gone(admin: httpx2.Client, org: str, stack: str) -> None:
    post(admin, stack, {"tag": "x"})
    response = admin.delete(stack)
    assert response.status_code == 200
    assert response.json() is True
    assert_error(admin.get(stack), 404, f"stack {org}/proj/dev has no deployment settings")
    assert_error(admin.delete(stack), 404, f"stack {org}/proj/dev has no deployment settings")


# --- merge-patch ---------------------------------------------------------------------------------


def test_post_merges_over_the_saved_settings(admin: httpx2.Client, stack: str) -> None:
    post(admin, stack, {"sourceContext": {"git": {"repoUrl": REPO, "branch": "main"}}, "tag": "a"})
    merged = post(admin, stack, {"sourceContext": {"git": {"repoDir": "infra"}}, "agentPoolID": "p"})
    assert merged["sourceContext"] == {"git": {"repoUrl": REPO, "branch": "main", "repoDir": "infra"}}
    assert (merged["tag"], merged["agentPoolID"]) == ("a", "p")


def test_a_nested_null_deletes_that_key(admin: httpx2.Client, stack: str) -> None:
    post(admin, stack, {"sourceContext": {"git": {"repoUrl": REPO, "branch": "main", "repoDir": "infra"}}})
    merged = post(admin, stack, {"sourceContext": {"git": {"repoDir": None}}})
    assert merged["sourceContext"] == {"git": {"repoUrl": REPO, "branch": "main"}}
    assert get(admin, stack)["sourceContext"] == {"git": {"repoUrl": REPO, "branch": "main"}}


def test_a_nested_null_can_delete_a_whole_section(admin: httpx2.Client, stack: str) -> None:
    post(admin, stack, {"sourceContext": {"git": {"repoUrl": REPO}}, "operationContext": {"preRunCommands": ["a"]}})
    merged = post(admin, stack, {"operationContext": {"preRunCommands": None}})
    assert merged["operationContext"] == {}
    assert merged["sourceContext"] == {"git": {"repoUrl": REPO}}


def test_a_top_level_null_means_not_given(admin: httpx2.Client, stack: str) -> None:
    """The generated Python SDK sends every unset field as null; that must not wipe the settings."""
    post(admin, stack, {"sourceContext": {"git": {"repoUrl": REPO}}, "tag": "keep", "agentPoolID": "pool"})
    merged = post(
        admin,
        stack,
        {"sourceContext": None, "operationContext": None, "tag": None, "agentPoolID": None, "executorContext": None},
    )
    assert merged["sourceContext"] == {"git": {"repoUrl": REPO}}
    assert (merged["tag"], merged["agentPoolID"]) == ("keep", "pool")


def test_environment_variables_are_merged_per_key(admin: httpx2.Client, stack: str) -> None:
    post(admin, stack, {"operationContext": {"environmentVariables": {"A": "1", "B": "2", "C": "3"}}})
    merged = post(admin, stack, {"operationContext": {"environmentVariables": {"B": "20", "C": None, "D": "4"}}})
    assert env(merged) == {
        "A": {"secret": "", "plaintext": "1"},
        "B": {"secret": "", "plaintext": "20"},
        "D": {"secret": "", "plaintext": "4"},
    }


def test_lists_are_replaced_not_merged(admin: httpx2.Client, stack: str) -> None:
    post(admin, stack, {"operationContext": {"preRunCommands": ["one", "two", "three"]}})
    merged = post(admin, stack, {"operationContext": {"preRunCommands": ["only"]}})
    assert merged["operationContext"]["preRunCommands"] == ["only"]


def test_a_commit_replaces_a_saved_branch_and_the_other_way_round(admin: httpx2.Client, stack: str) -> None:
    post(admin, stack, {"sourceContext": {"git": {"repoUrl": REPO, "branch": "main"}}})
    on_commit = post(admin, stack, {"sourceContext": {"git": {"commit": "0123abc"}}})
    assert on_commit["sourceContext"]["git"] == {"repoUrl": REPO, "commit": "0123abc"}
    on_branch = post(admin, stack, {"sourceContext": {"git": {"branch": "release"}}})
    assert on_branch["sourceContext"]["git"] == {"repoUrl": REPO, "branch": "release"}


def test_an_empty_object_patch_changes_nothing_but_the_version(admin: httpx2.Client, stack: str) -> None:
    first = post(admin, stack, {"tag": "x"})
    second = post(admin, stack, {})
    assert body_of(second) == body_of(first)
    assert second["version"] == first["version"] + 1


# --- replace -------------------------------------------------------------------------------------


def test_put_replaces_the_whole_document(admin: httpx2.Client, stack: str) -> None:
    post(
        admin,
        stack,
        {
            "sourceContext": {"git": {"repoUrl": REPO, "branch": "main"}},
            "tag": "old",
            "operationContext": {"preRunCommands": ["a"]},
        },
    )
    replaced = put(admin, stack, {"sourceContext": {"git": {"repoUrl": "https://example.com/other.git"}}})
    assert body_of(replaced) == {"sourceContext": {"git": {"repoUrl": "https://example.com/other.git"}}}
    assert get(admin, stack) == replaced


def test_put_on_a_stack_without_settings_creates_them(admin: httpx2.Client, stack: str) -> None:
    created = put(admin, stack, {"tag": "t"})
    assert body_of(created) == {"tag": "t"}
    assert created["version"] == 1


def test_put_drops_nested_nulls(admin: httpx2.Client, stack: str) -> None:
    replaced = put(admin, stack, {"sourceContext": {"git": {"repoUrl": REPO, "branch": None}}, "tag": None})
    assert body_of(replaced) == {"sourceContext": {"git": {"repoUrl": REPO}}}


# --- versions ------------------------------------------------------------------------------------


def test_the_version_increases_on_every_change_and_never_repeats(admin: httpx2.Client, stack: str) -> None:
    versions = [post(admin, stack, {"tag": "a"})["version"]]
    versions.append(post(admin, stack, {"tag": "b"})["version"])
    versions.append(put(admin, stack, {"tag": "c"})["version"])
    assert admin.delete(stack).status_code == 200
    versions.append(post(admin, stack, {"tag": "d"})["version"])
    assert admin.delete(stack).status_code == 200
    versions.append(put(admin, stack, {"tag": "e"})["version"])
    assert versions == [1, 2, 3, 4, 5]
    assert get(admin, stack)["version"] == 5


def test_a_refused_change_does_not_take_a_version(admin: httpx2.Client, stack: str) -> None:
    assert post(admin, stack, {"tag": "a"})["version"] == 1
    assert admin.post(stack, json={"tag": 5}).status_code == 400
    assert admin.put(stack, json={"tag": 5}).status_code == 400
    assert get(admin, stack)["version"] == 1
    assert post(admin, stack, {"tag": "b"})["version"] == 2


# --- secrets -------------------------------------------------------------------------------------


SECRETS = {
    "sourceContext": {
        "git": {
            "repoUrl": REPO,
            "gitAuth": {
                "basicAuth": {"userName": {"secret": "plain-user-9f1"}, "password": {"secret": "plain-pass-7c2"}}
            },
        }
    },
    "operationContext": {"environmentVariables": {"TOKEN": {"secret": "plain-token-3e8"}, "REGION": "eu-west-1"}},
}
PLAINTEXTS = ("plain-user-9f1", "plain-pass-7c2", "plain-token-3e8")


def test_secrets_come_back_masked_with_their_ciphertext(
    admin: httpx2.Client, stack: str, server_box: SecretBox
) -> None:
    saved = post(admin, stack, SECRETS)
    token = env(saved)["TOKEN"]
    assert token["secret"] == MASK
    assert server_box.open(unwrap_ciphertext(token["ciphertext"])) == "plain-token-3e8"
    basic = saved["sourceContext"]["git"]["gitAuth"]["basicAuth"]
    assert basic["userName"]["secret"] == MASK
    assert server_box.open(unwrap_ciphertext(basic["userName"]["ciphertext"])) == "plain-user-9f1"
    assert server_box.open(unwrap_ciphertext(basic["password"]["ciphertext"])) == "plain-pass-7c2"
    assert env(saved)["REGION"] == {"secret": "", "plaintext": "eu-west-1"}


def test_secret_plaintext_never_appears_in_any_response(admin: httpx2.Client, org: str, stack: str) -> None:
    deployments = stack.removesuffix("/settings")
    responses = [admin.post(stack, json=SECRETS), admin.get(stack), admin.put(stack, json=SECRETS)]
    created = admin.post(deployments, json={"operation": "update"})
    responses += [created, admin.get(f"{deployments}/{created.json()['id']}"), admin.get(deployments)]
    responses.append(admin.get(f"/api/orgs/{org}/deployments"))
    for response in responses:
        assert response.status_code < 300, response.text
        for plaintext in PLAINTEXTS:
            assert plaintext not in response.text


def test_sending_back_the_masked_values_keeps_the_secrets(
    admin: httpx2.Client, stack: str, server_box: SecretBox
) -> None:
    saved = post(admin, stack, SECRETS)
    again = post(admin, stack, body_of(saved))
    assert body_of(again) == body_of(saved)
    replaced = put(admin, stack, body_of(get(admin, stack)))
    assert body_of(replaced) == body_of(saved)
    assert server_box.open(unwrap_ciphertext(env(replaced)["TOKEN"]["ciphertext"])) == "plain-token-3e8"
    assert replaced["version"] == 3


def test_a_new_secret_value_replaces_the_old_one(admin: httpx2.Client, stack: str, server_box: SecretBox) -> None:
    post(admin, stack, SECRETS)
    changed = post(admin, stack, {"operationContext": {"environmentVariables": {"TOKEN": {"secret": "rotated-44a"}}}})
    assert server_box.open(unwrap_ciphertext(env(changed)["TOKEN"]["ciphertext"])) == "rotated-44a"
    assert env(changed)["REGION"] == {"secret": "", "plaintext": "eu-west-1"}


def test_a_ciphertext_sealed_with_another_key_is_refused(admin: httpx2.Client, stack: str) -> None:
    foreign = wrap_ciphertext(SecretBox.generate().seal("smuggled"))
    response = admin.post(
        stack, json={"operationContext": {"environmentVariables": {"X": {"secret": MASK, "ciphertext": foreign}}}}
    )
    assert_error(
        response,
        400,
        'operationContext.environmentVariables.X: the ciphertext was not sealed by this server; send the value as {"secret": ...}',
    )


def test_a_masked_value_without_its_ciphertext_is_refused(admin: httpx2.Client, stack: str) -> None:
    response = admin.post(stack, json={"operationContext": {"environmentVariables": {"X": {"secret": MASK}}}})
    message = assert_error(response, 400)
    assert message.startswith('operationContext.environmentVariables.X must be {"secret": "value"}')


# --- keys and validation -------------------------------------------------------------------------


def test_keys_are_matched_case_insensitively(admin: httpx2.Client, stack: str) -> None:
    saved = post(admin, stack, {"sourceContext": {"git": {"repoURL": REPO, "Branch": "main"}}, "agentPoolId": "pool-a"})
    assert saved["sourceContext"] == {"git": {"repoUrl": REPO, "branch": "main"}}
    assert saved["agentPoolID"] == "pool-a"
    assert "agentPoolId" not in saved
    merged = post(
        admin, stack, {"SourceContext": {"GIT": {"repoUrl": "https://example.com/new.git"}}, "AGENTPOOLID": "pool-b"}
    )
    assert merged["sourceContext"] == {"git": {"repoUrl": "https://example.com/new.git", "branch": "main"}}
    assert merged["agentPoolID"] == "pool-b"


def test_the_same_key_in_two_spellings_is_refused(admin: httpx2.Client, stack: str) -> None:
    response = admin.post(stack, json={"sourceContext": {"git": {"repoUrl": REPO, "repoURL": REPO}}})
    assert_error(response, 400, "sourceContext.git.repoUrl is given twice (keys are matched case-insensitively)")


def test_unknown_fields_are_ignored(admin: httpx2.Client, stack: str) -> None:
    saved = post(
        admin,
        stack,
        {"tag": "t", "futureField": {"x": 1}, "sourceContext": {"git": {"repoUrl": REPO, "depth": 1}, "template": {}}},
    )
    assert body_of(saved) == {"tag": "t", "sourceContext": {"git": {"repoUrl": REPO}}}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"tag": 1}, "tag must be a string"),
        ({"agentPoolID": False}, "agentPoolID must be a string"),
        ({"sourceContext": "git"}, "sourceContext must be a JSON object"),
        ({"sourceContext": {"git": {"repoUrl": 42}}}, "sourceContext.git.repoUrl must be a string"),
        (
            {"sourceContext": {"git": {"gitAuth": {"accessToken": 7}}}},
            'sourceContext.git.gitAuth.accessToken must be {"secret": "value"}',
        ),
        ({"operationContext": {"preRunCommands": "make"}}, "operationContext.preRunCommands must be a list of strings"),
        (
            {"operationContext": {"options": {"skipIntermediateDeployments": "yes"}}},
            "operationContext.options.skipIntermediateDeployments must be true or false",
        ),
        (
            {"operationContext": {"options": {"timeout": "60"}}},
            "operationContext.options.timeout must be a whole number of seconds between 1 and 604800",
        ),
        (
            {"operationContext": {"environmentVariables": {"PORT": 8080}}},
            'operationContext.environmentVariables.PORT must be a string or {"secret": "value"}; quote numbers and booleans',
        ),
        (
            {"operationContext": {"environmentVariables": {"BAD-NAME": "v"}}},
            "operationContext.environmentVariables: 'BAD-NAME' is not a valid environment variable name (letters, digits, '_')",
        ),
    ],
)
@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_wrong_types_are_a_400_naming_the_field_path(
    admin: httpx2.Client, stack: str, method: str, body: dict[str, Any], message: str
) -> None:
    assert_error(admin.request(method, stack, json=body), 400, message)
    assert admin.get(stack).status_code == 404  # nothing was saved


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_branch_and_commit_together_are_a_400(admin: httpx2.Client, stack: str, method: str) -> None:
    response = admin.request(
        method, stack, json={"sourceContext": {"git": {"repoUrl": REPO, "branch": "main", "commit": "abc"}}}
    )
    assert_error(response, 400, "sourceContext.git: give either 'branch' or 'commit', not both")


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_the_body_must_be_a_json_object(admin: httpx2.Client, stack: str, method: str) -> None:
    assert_error(admin.request(method, stack, json=["tag"]), 400, "the request body must be a JSON object, not list")
    assert_error(admin.request(method, stack, content=b""), 400, "the request needs a JSON object body")
