"""Ciphertexts and repo URLs in the services that save settings, queue deployments and show them."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from stackcascade.domain import settings as doc
from stackcascade.domain.errors import InvalidInput
from stackcascade.services import deployment_settings, deployments, stack_view
from stackcascade.services.context import Context
from stackcascade.services.queueing import settings_for
from tests.services.helpers import ADMIN, SOURCE, make_stack

SECRET_ENV = {"operationContext": {"environmentVariables": {"TOKEN": {"secret": "t0ken-77"}}}}


def sealed_token(document: dict[str, Any]) -> str:
    return str(document["operationContext"]["environmentVariables"]["TOKEN"]["ciphertext"])


def offer(ciphertext: str) -> dict[str, Any]:
    return {"operationContext": {"environmentVariables": {"X": {"ciphertext": doc.wrap_ciphertext(ciphertext)}}}}


async def test_a_deployment_sends_back_only_its_own_stacks_ciphertexts(ctx: Context) -> None:
    for name in ("prod", "dev"):
        await make_stack(ctx, "acme", "net", name)
    prod, _ = await deployment_settings.save(ctx, ADMIN, "acme", "net", "prod", {**SOURCE, **SECRET_ENV}, replace=True)
    await deployment_settings.save(ctx, ADMIN, "acme", "net", "dev", SOURCE, replace=True)
    body = {"operation": "update", **offer(sealed_token(prod))}

    with pytest.raises(InvalidInput, match="this ciphertext was not issued for stack acme/net/dev"):
        await deployments.create(ctx, ADMIN, "acme", "net", "dev", body)
    queued = await deployments.create(ctx, ADMIN, "acme", "net", "prod", body)

    _, total = await deployments.list_for_stack(ctx, ADMIN, "acme", "net", "dev", page=1, page_size=10, ascending=True)
    assert total == 0
    row, _, _ = await deployments.get(ctx, ADMIN, "acme", "net", "prod", queued.id)
    assert row.settings["operationContext"]["environmentVariables"]["X"] == {"ciphertext": sealed_token(prod)}
    assert ctx.secrets.open(row.settings["operationContext"]["environmentVariables"]["X"]["ciphertext"]) == "t0ken-77"


async def test_a_refused_ciphertext_leaves_the_saved_settings_as_they_were(ctx: Context) -> None:
    await make_stack(ctx, "acme", "net", "prod")
    saved, version = await deployment_settings.save(ctx, ADMIN, "acme", "net", "prod", SOURCE, replace=True)
    foreign = ctx.secrets.seal("sealed for some other stack")
    for replace in (True, False):
        with pytest.raises(InvalidInput, match=r"^operationContext\.environmentVariables\.X: this ciphertext"):
            await deployment_settings.save(ctx, ADMIN, "acme", "net", "prod", offer(foreign), replace=replace)
    assert await deployment_settings.get(ctx, ADMIN, "acme", "net", "prod") == (saved, version)


def test_queueing_without_a_request_keeps_the_saved_secrets() -> None:
    """Webhook edges and cascades queue with an empty request: the stack's own ciphertexts stay usable."""
    saved = {**SOURCE, "operationContext": {"environmentVariables": {"TOKEN": {"ciphertext": "gAAAAsaved"}}}}
    stack_row = SimpleNamespace(org="acme", project="net", name="prod", settings_document=saved)
    assert settings_for(stack_row, {}, inherit=True) == saved


def test_an_offered_ciphertext_is_bound_even_when_settings_are_not_inherited() -> None:
    saved = {**SOURCE, "operationContext": {"environmentVariables": {"TOKEN": {"ciphertext": "gAAAAsaved"}}}}
    stack_row = SimpleNamespace(org="acme", project="net", name="prod", settings_document=saved)
    request = {**SOURCE, "operationContext": {"environmentVariables": {"X": {doc.OFFERED: "gAAAAsaved"}}}}
    effective = settings_for(stack_row, request, inherit=False)
    assert effective["operationContext"] == {"environmentVariables": {"X": {"ciphertext": "gAAAAsaved"}}}
    stack_row.settings_document = None
    with pytest.raises(InvalidInput, match="not issued for stack acme/net/prod"):
        settings_for(stack_row, request, inherit=False)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://deploybot:hunter2@git.example.com/x.git", "https://deploybot:***@git.example.com/x.git"),
        ("https://ghp_T0KEN@github.com/o/r.git", "https://***@github.com/o/r.git"),
        ("ssh://git@github.com/o/r.git", "ssh://git@github.com/o/r.git"),
    ],
)
def test_the_console_shows_a_stored_repo_url_without_its_secret(url: str, shown: str) -> None:
    view = stack_view.settings_view({"sourceContext": {"git": {"repoUrl": url}}}, 3)
    assert view.repo_url == shown
