"""Deployment settings documents: normalise, merge_patch, public_view and the small readers."""

from __future__ import annotations

import base64
import copy
import uuid
from typing import Any

import pytest

from stackcascade.domain import settings as doc
from stackcascade.domain.errors import InvalidInput
from stackcascade.domain.settings import MASK, MAX_TIMEOUT_SECONDS, merge_patch, public_view


class FakeBox:
    """Seals by remembering: ciphertexts look like Fernet tokens and never contain the plaintext."""

    def __init__(self) -> None:
        self.plain: dict[str, str] = {}

    def seal(self, plaintext: str) -> str:
        ciphertext = "gAAAA" + uuid.uuid4().hex
        self.plain[ciphertext] = plaintext
        return ciphertext

    def is_sealed(self, ciphertext: str) -> bool:
        return ciphertext in self.plain


@pytest.fixture
def box() -> FakeBox:
    return FakeBox()


STACK = "acme/net/prod"


def norm(box: FakeBox, raw: object, *, patch: bool = False) -> dict[str, Any]:
    return doc.normalise(raw, seal=box.seal, is_sealed=box.is_sealed, patch=patch)


def invalid(box: FakeBox, raw: object, *, patch: bool = False) -> str:
    with pytest.raises(InvalidInput) as caught:
        norm(box, raw, patch=patch)
    assert caught.value.status_code == 400
    return caught.value.message


# --- normalise: shape and keys -------------------------------------------------------------------


@pytest.mark.parametrize("raw", [[], "settings", 3, None, True])
def test_the_body_must_be_an_object(box: FakeBox, raw: object) -> None:
    assert invalid(box, raw) == "the body must be a JSON object"


def test_a_nested_section_must_be_an_object_and_the_message_names_its_path(box: FakeBox) -> None:
    assert invalid(box, {"sourceContext": {"git": "https://x"}}) == "sourceContext.git must be a JSON object"
    assert invalid(box, {"operationContext": []}) == "operationContext must be a JSON object"


def test_unknown_keys_are_dropped_at_every_level(box: FakeBox) -> None:
    raw = {
        "tag": "t",
        "surprise": 1,
        "sourceContext": {"git": {"repoUrl": "https://r", "unknownGitKey": "x"}, "svn": {}},
        "operationContext": {"options": {"shell": "sh", "colour": "blue"}},
    }
    assert norm(box, raw) == {
        "tag": "t",
        "sourceContext": {"git": {"repoUrl": "https://r"}},
        "operationContext": {"options": {"shell": "sh"}},
    }


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"sourceContext": {"git": {"repoURL": "u"}}}, {"sourceContext": {"git": {"repoUrl": "u"}}}),
        ({"SOURCECONTEXT": {"GIT": {"REPOURL": "u"}}}, {"sourceContext": {"git": {"repoUrl": "u"}}}),
        ({"agentPoolId": "p"}, {"agentPoolID": "p"}),
        ({"agentpoolid": "p"}, {"agentPoolID": "p"}),
        ({"operationcontext": {"PreRunCommands": ["a"]}}, {"operationContext": {"preRunCommands": ["a"]}}),
    ],
)
def test_keys_match_case_insensitively_and_are_stored_canonically(
    box: FakeBox, raw: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert norm(box, raw) == expected


def test_the_same_key_in_two_spellings_is_refused(box: FakeBox) -> None:
    message = invalid(box, {"sourceContext": {"git": {"repoUrl": "a", "repoURL": "b"}}})
    assert message == "sourceContext.git.repoUrl is given twice (keys are matched case-insensitively)"
    assert invalid(box, {"agentPoolID": "a", "agentPoolId": "b"}).startswith("agentPoolID is given twice")


def test_environment_variable_names_keep_their_case(box: FakeBox) -> None:
    stored = norm(box, {"operationContext": {"environmentVariables": {"Path_x": "1", "PATH_X": "2"}}})
    assert stored["operationContext"]["environmentVariables"] == {"Path_x": "1", "PATH_X": "2"}


# --- normalise: nulls ----------------------------------------------------------------------------


def test_a_top_level_null_means_not_given_even_in_a_patch(box: FakeBox) -> None:
    assert norm(box, {"tag": None, "sourceContext": None, "agentPoolID": "p"}, patch=True) == {"agentPoolID": "p"}


def test_a_nested_null_is_kept_in_a_patch_so_it_can_delete(box: FakeBox) -> None:
    raw = {"sourceContext": {"git": {"branch": None}}, "operationContext": {"environmentVariables": {"A": None}}}
    assert norm(box, raw, patch=True) == {
        "sourceContext": {"git": {"branch": None}},
        "operationContext": {"environmentVariables": {"A": None}},
    }


def test_nested_nulls_are_dropped_when_replacing(box: FakeBox) -> None:
    raw = {
        "sourceContext": {"git": {"branch": None, "repoUrl": "u"}},
        "operationContext": {"environmentVariables": {"A": None}},
    }
    assert norm(box, raw, patch=False) == {
        "sourceContext": {"git": {"repoUrl": "u"}},
        "operationContext": {"environmentVariables": {}},
    }


# --- normalise: leaf types -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"tag": 1}, "tag must be a string"),
        ({"sourceContext": {"git": {"branch": ["main"]}}}, "sourceContext.git.branch must be a string"),
        (
            {"operationContext": {"options": {"skipIntermediateDeployments": "true"}}},
            "operationContext.options.skipIntermediateDeployments must be true or false",
        ),
        (
            {"operationContext": {"options": {"skipInstallDependencies": 1}}},
            "operationContext.options.skipInstallDependencies must be true or false",
        ),
        ({"operationContext": {"preRunCommands": "make"}}, "operationContext.preRunCommands must be a list of strings"),
        (
            {"operationContext": {"preRunCommands": ["make", 1]}},
            "operationContext.preRunCommands must be a list of strings",
        ),
        ({"operationContext": {"oidc": "aws"}}, "operationContext.oidc must be a JSON object"),
        ({"executorContext": {"executorImage": "img"}}, "executorContext.executorImage must be a JSON object"),
        (
            {"operationContext": {"environmentVariables": ["A=1"]}},
            "operationContext.environmentVariables must be an object of NAME: value",
        ),
    ],
)
def test_wrong_types_are_refused_naming_the_field_path(box: FakeBox, raw: dict[str, Any], message: str) -> None:
    assert invalid(box, raw) == message


@pytest.mark.parametrize("value", [0, -1, MAX_TIMEOUT_SECONDS + 1, 1.5, "60", True, False])
def test_the_timeout_is_a_whole_number_of_seconds_in_range(box: FakeBox, value: object) -> None:
    message = invalid(box, {"operationContext": {"options": {"timeout": value}}})
    assert (
        message
        == f"operationContext.options.timeout must be a whole number of seconds between 1 and {MAX_TIMEOUT_SECONDS}"
    )


@pytest.mark.parametrize("value", [1, 3600, MAX_TIMEOUT_SECONDS])
def test_timeouts_in_range_are_kept(box: FakeBox, value: int) -> None:
    assert norm(box, {"operationContext": {"options": {"timeout": value}}}) == {
        "operationContext": {"options": {"timeout": value}}
    }


def test_branch_and_commit_together_are_refused(box: FakeBox) -> None:
    message = invalid(box, {"sourceContext": {"git": {"branch": "main", "commit": "abc123"}}})
    assert message == "sourceContext.git: give either 'branch' or 'commit', not both"


def test_branch_with_a_null_commit_is_fine_in_a_patch(box: FakeBox) -> None:
    assert norm(box, {"sourceContext": {"git": {"branch": "main", "commit": None}}}, patch=True) == {
        "sourceContext": {"git": {"branch": "main", "commit": None}}
    }


# --- normalise: environment variables and secrets ------------------------------------------------


def test_environment_values_plain_secret_and_plaintext_object(box: FakeBox) -> None:
    stored = norm(
        box,
        {
            "operationContext": {
                "environmentVariables": {
                    "PLAIN": "p",
                    "SEALED": {"secret": "s3cret"},
                    "SDK_PLAIN": {"secret": "", "plaintext": "from-sdk"},
                    "UPPER": {"Secret": "shouty"},
                }
            }
        },
    )
    env = stored["operationContext"]["environmentVariables"]
    assert env["PLAIN"] == "p"
    assert env["SDK_PLAIN"] == "from-sdk"
    assert set(env["SEALED"]) == {"ciphertext"}
    assert box.plain[env["SEALED"]["ciphertext"]] == "s3cret"
    assert box.plain[env["UPPER"]["ciphertext"]] == "shouty"
    assert "s3cret" not in repr(stored)


@pytest.mark.parametrize("value", [1, 1.5, True, ["a"]])
def test_environment_values_must_be_strings_or_secret_objects(box: FakeBox, value: object) -> None:
    message = invalid(box, {"operationContext": {"environmentVariables": {"N": value}}})
    assert (
        message
        == 'operationContext.environmentVariables.N must be a string or {"secret": "value"}; quote numbers and booleans'
    )


@pytest.mark.parametrize("name", ["", "1ABC", "HAS-DASH", "has space", "dollar$", "É"])
def test_environment_variable_names_are_checked(box: FakeBox, name: str) -> None:
    message = invalid(box, {"operationContext": {"environmentVariables": {name: "v"}}})
    assert (
        message
        == f"operationContext.environmentVariables: {name!r} is not a valid environment variable name (letters, digits, '_')"
    )


@pytest.mark.parametrize("value", [{}, {"secret": None}, {"secret": 5}, {"secret": MASK}, {"other": "x"}])
def test_a_secret_object_without_a_usable_value_is_refused(box: FakeBox, value: dict[str, Any]) -> None:
    message = invalid(box, {"operationContext": {"environmentVariables": {"S": value}}})
    assert message.startswith('operationContext.environmentVariables.S must be {"secret": "value"}')


def test_git_auth_secrets_are_sealed_from_every_accepted_form(box: FakeBox) -> None:
    stored = norm(
        box,
        {
            "sourceContext": {
                "git": {
                    "gitAuth": {
                        "accessToken": "bare-string",
                        "basicAuth": {"userName": {"secret": "user"}, "password": {"plaintext": "pw"}},
                    }
                }
            }
        },
    )
    auth = stored["sourceContext"]["git"]["gitAuth"]
    assert box.plain[auth["accessToken"]["ciphertext"]] == "bare-string"
    assert box.plain[auth["basicAuth"]["userName"]["ciphertext"]] == "user"
    assert box.plain[auth["basicAuth"]["password"]["ciphertext"]] == "pw"


@pytest.mark.parametrize("value", [5, True, ["x"]])
def test_a_git_auth_secret_of_the_wrong_type_is_refused(box: FakeBox, value: object) -> None:
    message = invalid(box, {"sourceContext": {"git": {"gitAuth": {"accessToken": value}}}})
    assert message == 'sourceContext.git.gitAuth.accessToken must be {"secret": "value"}'


def test_a_returned_ciphertext_is_accepted_raw_wrapped_or_as_a_one_element_list(box: FakeBox) -> None:
    ciphertext = box.seal("kept")
    for form in (
        {"ciphertext": ciphertext},
        {"ciphertext": doc.wrap_ciphertext(ciphertext)},
        {"ciphertext": [doc.wrap_ciphertext(ciphertext)]},
        {"secret": MASK, "ciphertext": doc.wrap_ciphertext(ciphertext)},
    ):
        stored = norm(box, {"operationContext": {"environmentVariables": {"S": form}}})
        assert stored["operationContext"]["environmentVariables"]["S"] == {doc.OFFERED: ciphertext}


def test_a_new_secret_value_wins_over_a_sent_back_ciphertext(box: FakeBox) -> None:
    old = box.seal("old")
    stored = norm(box, {"operationContext": {"environmentVariables": {"S": {"secret": "new", "ciphertext": old}}}})
    assert box.plain[stored["operationContext"]["environmentVariables"]["S"]["ciphertext"]] == "new"


def test_a_ciphertext_this_server_did_not_seal_is_refused(box: FakeBox) -> None:
    forged = doc.wrap_ciphertext("gAAAAforged")
    message = invalid(box, {"operationContext": {"environmentVariables": {"S": {"ciphertext": forged}}}})
    assert message == (
        'operationContext.environmentVariables.S: the ciphertext was not sealed by this server; send the value as {"secret": ...}'
    )


# --- bind_ciphertexts: a ciphertext sent back counts only for the stack that holds it ---------------


def env_of(value: object) -> dict[str, Any]:
    return {"operationContext": {"environmentVariables": {"S": value}}}


def test_a_sent_back_ciphertext_the_stack_holds_is_bound(box: FakeBox) -> None:
    saved = norm(box, env_of({"secret": "kept"}))
    sealed = saved["operationContext"]["environmentVariables"]["S"]["ciphertext"]
    offered = norm(box, env_of({"secret": MASK, "ciphertext": doc.wrap_ciphertext(sealed)}))
    assert doc.bind_ciphertexts(offered, saved, STACK) == saved


def test_a_ciphertext_the_stack_does_not_hold_is_refused_naming_the_stack(box: FakeBox) -> None:
    elsewhere = box.seal("another stack's secret")  # sealed by this server, for some other stack
    offered = norm(box, env_of({"ciphertext": doc.wrap_ciphertext(elsewhere)}))
    for saved in (None, {}, norm(box, env_of({"secret": "own"}))):
        with pytest.raises(InvalidInput) as caught:
            doc.bind_ciphertexts(offered, saved, STACK)
        assert caught.value.message == (
            "operationContext.environmentVariables.S: this ciphertext was not issued for stack acme/net/prod: "
            'give the value as {"secret": "..."}'
        )


def test_git_auth_ciphertexts_are_bound_like_environment_ones(box: FakeBox) -> None:
    elsewhere = box.seal("pw")
    offered = norm(box, {"sourceContext": {"git": {"gitAuth": {"basicAuth": {"password": {"ciphertext": elsewhere}}}}}})
    with pytest.raises(InvalidInput, match=r"^sourceContext\.git\.gitAuth\.basicAuth\.password: this ciphertext"):
        doc.bind_ciphertexts(offered, {}, STACK)


def test_a_ciphertext_parked_in_a_free_object_is_not_held(box: FakeBox) -> None:
    """oidc, gitHub... are kept as given: a ciphertext put there must not vouch for one sent as a secret."""
    elsewhere = box.seal("smuggled")
    saved = norm(
        box, {"gitHub": {"x": {"ciphertext": elsewhere}}, "operationContext": {"oidc": {"ciphertext": elsewhere}}}
    )
    with pytest.raises(InvalidInput, match="was not issued for stack"):
        doc.bind_ciphertexts(norm(box, env_of({"ciphertext": elsewhere})), saved, STACK)


def test_binding_keeps_new_secrets_plain_values_and_nulls(box: FakeBox) -> None:
    request = norm(
        box, {"operationContext": {"environmentVariables": {"N": {"secret": "n"}, "P": "p", "D": None}}}, patch=True
    )
    assert doc.bind_ciphertexts(request, None, STACK) == request


# --- repoUrl: credentials belong in gitAuth ---------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://deploybot:hunter2@git.example.com/x.git",
        "https://ghp_TOKEN123@github.com/o/r.git",
        "HTTP://user:@host/r.git",
        "  https://x-access-token:t@github.com/o/r",
        "https://good\\@evil.example/r.git",
        "ssh://git:pw@host/r.git",
    ],
)
def test_credentials_in_the_repo_url_are_refused_pointing_at_git_auth(box: FakeBox, url: str) -> None:
    message = invalid(box, {"sourceContext": {"git": {"repoURL": url}}})
    assert message == (
        "sourceContext.git.repoUrl must not carry credentials (user:password@ or token@): put them in "
        'sourceContext.git.gitAuth.basicAuth (userName, and password as {"secret": "..."}) '
        'or in sourceContext.git.gitAuth.accessToken as {"secret": "..."}'
    )
    assert "hunter2" not in message and "TOKEN123" not in message


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/o/r.git",
        "ssh://git@github.com/o/r.git",
        "git@github.com:o/r.git",
        "file:///srv/git/r.git",
        "/srv/infra",
        "https://host/path/with@sign.git",
    ],
)
def test_repo_urls_without_secrets_are_kept(box: FakeBox, url: str) -> None:
    assert norm(box, {"sourceContext": {"git": {"repoUrl": url}}}) == {"sourceContext": {"git": {"repoUrl": url}}}


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://deploybot:hunter2@host/x.git", "https://deploybot:***@host/x.git"),
        ("https://TOKEN@github.com/o/r.git", "https://***@github.com/o/r.git"),
        ("ssh://git:pw@host/r.git", "ssh://git:***@host/r.git"),
        ("ssh://git@host/r.git", "ssh://git@host/r.git"),
        ("git@host:o/r.git", "git@host:o/r.git"),
        ("https://host/r.git", "https://host/r.git"),
    ],
)
def test_a_stored_repo_url_is_shown_without_its_secret(url: str, shown: str) -> None:
    assert doc.redact_repo_url(url) == shown
    assert public_view({"sourceContext": {"git": {"repoUrl": url}}})["sourceContext"]["git"]["repoUrl"] == shown


# --- merge_patch ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "patch", "expected"),
    [  # RFC 7386 appendix A, the cases that apply to objects
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_follows_rfc_7386(base: dict[str, Any], patch: dict[str, Any], expected: dict[str, Any]) -> None:
    assert merge_patch(base, patch) == expected


def test_merge_patch_replaces_lists_whole() -> None:
    base = {"operationContext": {"preRunCommands": ["a", "b", "c"]}}
    assert merge_patch(base, {"operationContext": {"preRunCommands": ["z"]}}) == {
        "operationContext": {"preRunCommands": ["z"]}
    }


def test_merge_patch_merges_environment_variables_per_key() -> None:
    base = {"operationContext": {"environmentVariables": {"A": "1", "B": "2", "C": "3"}}}
    patch = {"operationContext": {"environmentVariables": {"B": "20", "C": None, "D": "4"}}}
    assert merge_patch(base, patch) == {"operationContext": {"environmentVariables": {"A": "1", "B": "20", "D": "4"}}}


def test_merge_patch_deleting_a_missing_key_is_a_no_op() -> None:
    assert merge_patch({"a": 1}, {"b": None}) == {"a": 1}


def test_a_new_branch_drops_an_inherited_commit_and_the_other_way_round() -> None:
    on_branch = {"sourceContext": {"git": {"repoUrl": "u", "branch": "main"}}}
    on_commit = merge_patch(on_branch, {"sourceContext": {"git": {"commit": "abc"}}})
    assert on_commit == {"sourceContext": {"git": {"repoUrl": "u", "commit": "abc"}}}
    assert merge_patch(on_commit, {"sourceContext": {"git": {"branch": "dev"}}}) == {
        "sourceContext": {"git": {"repoUrl": "u", "branch": "dev"}}
    }


def test_a_sealed_secret_is_replaced_whole_not_merged() -> None:
    base = {"operationContext": {"environmentVariables": {"S": {"ciphertext": "gAAAAold"}}}}
    patch = {"operationContext": {"environmentVariables": {"S": {"ciphertext": "gAAAAnew"}}}}
    assert merge_patch(base, patch)["operationContext"]["environmentVariables"]["S"] == {"ciphertext": "gAAAAnew"}


def test_a_secret_replacing_a_plain_value_and_back() -> None:
    base = {"operationContext": {"environmentVariables": {"S": "plain"}}}
    sealed = merge_patch(base, {"operationContext": {"environmentVariables": {"S": {"ciphertext": "gAAAAx"}}}})
    assert sealed["operationContext"]["environmentVariables"]["S"] == {"ciphertext": "gAAAAx"}
    plain = merge_patch(sealed, {"operationContext": {"environmentVariables": {"S": "again"}}})
    assert plain["operationContext"]["environmentVariables"]["S"] == "again"


def test_a_new_section_has_its_nulls_dropped() -> None:
    assert merge_patch({}, {"sourceContext": {"git": {"repoUrl": "u", "branch": None}}}) == {
        "sourceContext": {"git": {"repoUrl": "u"}}
    }


def test_merge_patch_does_not_mutate_its_inputs() -> None:
    base = {"a": {"b": 1, "c": [1]}, "d": 2}
    patch = {"a": {"b": None, "e": 3}, "d": None}
    base_copy, patch_copy = copy.deepcopy(base), copy.deepcopy(patch)
    assert merge_patch(base, patch) == {"a": {"c": [1], "e": 3}}
    assert base == base_copy
    assert patch == patch_copy


# --- public_view ---------------------------------------------------------------------------------


def test_public_view_masks_secrets_with_their_wrapped_ciphertext() -> None:
    stored = {
        "sourceContext": {"git": {"repoUrl": "u", "gitAuth": {"accessToken": {"ciphertext": "gAAAAtoken"}}}},
        "operationContext": {"environmentVariables": {"S": {"ciphertext": "gAAAAenv"}, "P": "plain"}},
        "tag": "t",
    }
    view = public_view(stored)
    assert view["sourceContext"]["git"]["gitAuth"]["accessToken"] == {
        "secret": MASK,
        "ciphertext": base64.b64encode(b"gAAAAtoken").decode(),
    }
    assert view["operationContext"]["environmentVariables"] == {
        "S": {"secret": MASK, "ciphertext": base64.b64encode(b"gAAAAenv").decode()},
        "P": {"secret": "", "plaintext": "plain"},
    }
    assert view["sourceContext"]["git"]["repoUrl"] == "u"
    assert view["tag"] == "t"
    assert stored["operationContext"]["environmentVariables"]["P"] == "plain"  # not mutated


def test_only_environment_strings_are_wrapped_as_plaintext_objects() -> None:
    view = public_view({"operationContext": {"preRunCommands": ["make"], "options": {"shell": "sh"}}})
    assert view == {"operationContext": {"preRunCommands": ["make"], "options": {"shell": "sh"}}}


def test_the_public_view_sent_back_normalises_to_the_same_stored_document(box: FakeBox) -> None:
    stored = norm(
        box,
        {
            "tag": "t",
            "agentPoolID": "pool",
            "sourceContext": {
                "git": {
                    "repoUrl": "u",
                    "branch": "main",
                    "repoDir": "infra",
                    "gitAuth": {"accessToken": {"secret": "tok"}},
                }
            },
            "operationContext": {
                "preRunCommands": ["make"],
                "environmentVariables": {"P": "plain", "S": {"secret": "hidden"}},
                "options": {"shell": "bash", "skipIntermediateDeployments": True, "timeout": 60},
            },
        },
    )
    assert doc.bind_ciphertexts(norm(box, public_view(stored)), stored, STACK) == stored


# --- readers -------------------------------------------------------------------------------------


def test_environment_lists_names_in_order_with_secrets_as_none() -> None:
    stored = {"operationContext": {"environmentVariables": {"B": "2", "S": {"ciphertext": "c"}, "A": "1"}}}
    assert doc.environment(stored) == [("B", "2"), ("S", None), ("A", "1")]


@pytest.mark.parametrize("stored", [{}, {"operationContext": "x"}, {"operationContext": {"environmentVariables": []}}])
def test_environment_of_a_document_without_variables_is_empty(stored: dict[str, Any]) -> None:
    assert doc.environment(stored) == []


def test_git_source_and_option_tolerate_missing_sections() -> None:
    assert doc.git_source({}) == {}
    assert doc.git_source({"sourceContext": {"git": "x"}}) == {}
    assert doc.git_source({"sourceContext": {"git": {"repoUrl": "u"}}}) == {"repoUrl": "u"}
    assert doc.option({}, "shell") is None
    assert doc.option({"operationContext": {"options": {"shell": "zsh"}}}, "shell") == "zsh"


def test_wrap_and_unwrap_ciphertext_round_trip() -> None:
    assert doc.unwrap_ciphertext(doc.wrap_ciphertext("gAAAAabc")) == "gAAAAabc"
    assert doc.unwrap_ciphertext("gAAAAabc") == "gAAAAabc"
    assert doc.unwrap_ciphertext("not base64!") == "not base64!"
