"""``cascade autodeploy show|diff|apply``: an organization's Auto Deploy declaration (design 5.3).

FILE is our document (YAML or JSON: ``stacks: [{project, stack, downstreamRefs}]``) or a Pulumi YAML
program with ``auto-deploy:AutoDeployer`` and ``pulumiservice:Webhook`` resources (it has
``resources:``), as Pulumi's documentation writes them. A program is translated here, on the client;
anything in it that cannot be honoured is listed, and then ``apply`` sends nothing. What it declares
that has no effect here (provider configuration, outputs) is noted on stderr and does not stop it.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich import box
from rich.table import Table
from rich.text import Text

from stackcascade.cli import credentials
from stackcascade.cli.client import Json
from stackcascade.cli.connection import JsonOption, OrgOption, ServerOption, TokenOption
from stackcascade.cli.errors import CliError, reports_errors
from stackcascade.cli.options import connect_to_org
from stackcascade.cli.output import console, print_json
from stackcascade.domain.autodeploy import (
    ProgramImport,
    import_pulumi_program,
    is_pulumi_program,
    parse_document,
    to_document,
)
from stackcascade.domain.errors import InvalidInput

app = typer.Typer(
    help="Declare an organization's deployment graph in one document (or a Pulumi Auto Deploy program).",
    no_args_is_help=True,
)

FileArgument = Annotated[
    str,
    typer.Argument(
        metavar="FILE",
        help="An Auto Deploy document (YAML or JSON) or a Pulumi YAML program; '-' reads stdin.",
        show_default=False,
    ),
]
ProgramOrgOption = Annotated[
    list[str] | None,
    typer.Option(
        "--program-org",
        metavar="NAME",
        help="Pulumi programs: an organization the program names that means --org here; repeat for more.",
        show_default=False,
    ),
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking.")]

_STYLES = {"create": "green", "update": "yellow", "delete": "red", "gate": "yellow"}


# --- reading FILE -------------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """YAML as Pulumi reads it: only true/false are booleans (``stack: on`` is a name), no duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                line = key_node.start_mark.line + 1
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r} on line {line}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_BOOL = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


class _DuplicateKey(ValueError):
    pass


def _json_object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """A JSON object, refusing a key given twice (as YAML is read)."""
    found: dict[str, object] = {}
    for key, value in pairs:
        if key in found:
            raise _DuplicateKey(f"duplicate key {key!r}")
        found[key] = value
    return found


def _yaml_error(exc: yaml.YAMLError) -> str:
    """A YAML error on one line, with its position when known."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        return f"{exc.problem or exc.context}{where}"
    return " ".join(str(exc).split())


def _read(file: str) -> tuple[str, object]:
    """(a name for messages, the parsed content).

    JSON is read as JSON when the name ends in .json, and also when the content starts with ``{`` or
    ``[`` (stdin, a file of any name): JSON indented with tabs, as ``jq --tab`` writes it, is no YAML.
    Content that starts so but is no JSON is read as YAML (``{stacks: []}``). A UTF-8 byte order mark,
    which Windows editors and PowerShell's ``Out-File`` write, is dropped first.
    """
    if file == "-":
        name, text = "stdin", sys.stdin.read().removeprefix("\ufeff")
    else:
        path = Path(file)
        name = str(path)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise CliError(f"cannot read {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise CliError(f"{path} is not UTF-8 text") from None
    json_only = name.lower().endswith(".json")
    json_error = ""
    if json_only or text.lstrip()[:1] in ("{", "["):
        try:
            return name, json.loads(text, object_pairs_hook=_json_object)
        except _DuplicateKey as exc:
            raise CliError(f"{name} is not valid JSON: {exc}") from None
        except ValueError as exc:
            if json_only:
                raise CliError(f"{name} is not valid JSON: {exc}") from None
            json_error = str(exc)
    try:
        return name, yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        if json_error:
            raise CliError(f"{name} is not valid JSON ({json_error}) nor YAML ({_yaml_error(exc)})") from None
        raise CliError(f"{name} is not valid YAML: {_yaml_error(exc)}") from None


def _load(file: str, org: str, program_orgs: list[str] | None) -> tuple[str, Json, ProgramImport | None]:
    """(name, our document, the import when FILE is a Pulumi program)."""
    name, data = _read(file)
    if not isinstance(data, dict):
        raise CliError(f"{name} must hold a map: an Auto Deploy document (stacks: ...) or a Pulumi YAML program")
    if "stacks" in data and "resources" in data:
        raise CliError(f"{name} has both stacks: and resources:; is it an Auto Deploy document or a Pulumi program?")
    if is_pulumi_program(data):
        imported = import_pulumi_program(data, organization=org, program_organizations=program_orgs or ())
        for note in imported.notes:
            typer.echo(f"note: {note}", err=True)
        return name, imported.document, imported
    if "stacks" not in data:
        raise CliError(
            f"{name} is neither an Auto Deploy document (stacks: [{{project, stack, downstreamRefs}}]) "
            "nor a Pulumi YAML program (resources: ...)"
        )
    if program_orgs:
        raise CliError("--program-org is for Pulumi programs; an Auto Deploy document names no organization")
    return name, data, None


def _findings(imported: ProgramImport | None) -> Json:
    """The problems and notes of a program, for --json (both empty for our document)."""
    if imported is None:
        return {"problems": [], "notes": []}
    return {"problems": [str(p) for p in imported.problems], "notes": [str(n) for n in imported.notes]}


def _report_problems(name: str, imported: ProgramImport, org: str) -> None:
    """List what the program cannot honour, on stderr."""
    count = len(imported.problems)
    noun = "thing" if count == 1 else "things"
    typer.echo(f"The Pulumi program {name} has {count} {noun} stackcascade cannot honour:", err=True)
    for problem in imported.problems:
        typer.echo(f"  - {problem}", err=True)
    foreign = sorted({p.subject for p in imported.problems if p.code == "organization"})
    for other in foreign:
        typer.echo(
            f"hint: the program declares stacks of organization {other!r}: run with --org {other}, or pass "
            f"--program-org {other} to declare them in {org}",
            err=True,
        )


# --- printing a diff ----------------------------------------------------------------------------------------


def _print_yaml(document: Json) -> None:
    """An Auto Deploy document as YAML, its keys in their order (as ``show`` prints it)."""
    typer.echo(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), nl=False)


def _edge_details(edge: Json) -> str:
    parts = [f"triggerOn {edge.get('triggerOn')}"]
    if edge.get("requireApproval"):
        parts.append("requires approval")
    filters = edge.get("filters") or []
    groups = edge.get("groups") or []
    events = ", ".join([*filters, *(f"{group} (group)" for group in groups)]) or "all events"
    parts.append(f"on {events}")
    return "; ".join(parts)


def _change_details(edge: Json) -> str:
    changes = edge.get("changes") or {}
    shown = []
    for name, change in changes.items():
        before, after = change.get("from"), change.get("to")
        shown.append(f"{name}: {json.dumps(before)} -> {json.dumps(after)}")
    return "; ".join(shown)


def _summary(diff: Json, *, done: bool = False) -> str:
    """``done``: said of changes made ("2 created"), not planned ("2 to create")."""
    counts = [(len(diff.get(key) or []), key) for key in ("create", "update", "delete")]
    gates = len(diff.get("gates") or [])
    parts = [f"{count} {key}d" if done else f"{count} to {key}" for count, key in counts]
    parts.append(f"{len(diff.get('unchanged') or [])} unchanged")
    if gates:
        plural = "s" if gates != 1 else ""
        parts.append(f"{gates} stack gate{plural} changed" if done else f"{gates} stack gate{plural} to change")
    return ", ".join(parts)


def _changes_anything(diff: Json) -> bool:
    return any(diff.get(key) for key in ("create", "update", "delete", "gates"))


def _print_diff(diff: Json, *, partial: bool = False) -> None:
    """The diff as a table and a summary; ``partial``: of a program some of which cannot be honoured."""
    if not _changes_anything(diff):
        if partial:
            typer.echo(f"No changes to what stackcascade can honour ({_summary(diff)}); the rest is listed below.")
        else:
            typer.echo(f"No changes: the declaration matches ({_summary(diff)}).")
        return
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in ("CHANGE", "UPSTREAM", "DOWNSTREAM", "WEBHOOK", "DETAILS"):
        table.add_column(column, overflow="fold")
    rows: list[tuple[str, Json, str]] = []
    rows += [("create", edge, _edge_details(edge)) for edge in diff.get("create") or []]
    rows += [("update", edge, _change_details(edge)) for edge in diff.get("update") or []]
    rows += [("delete", edge, _edge_details(edge)) for edge in diff.get("delete") or []]
    for change, edge, details in rows:
        table.add_row(
            Text(change, style=_STYLES[change]),
            Text(str(edge.get("upstream"))),
            Text(str(edge.get("downstream"))),
            Text(str(edge.get("webhook") or "")),
            Text(details),
        )
    for gate in diff.get("gates") or []:
        table.add_row(
            Text("gate", style=_STYLES["gate"]),
            Text(""),
            Text(str(gate.get("stack"))),
            Text(""),
            Text(f"requireApproval: {json.dumps(gate.get('from'))} -> {json.dumps(gate.get('to'))}"),
        )
    console().print(table)
    rest = "; the rest, which cannot be honoured, is listed below" if partial else ""
    typer.echo(f"Plan: {_summary(diff)}{rest}.")


def _confirm(question: str) -> bool:
    """Ask on stderr and read the answer from stdin; no answer (or none that is yes) is no.

    Not ``typer.confirm``: it writes the last character of its prompt, a space, to stdout, which
    corrupts what stdout carries (``--json``).
    """
    while True:
        typer.echo(f"{question} [y/N]: ", nl=False, err=True)
        try:
            answer = sys.stdin.readline()
        except KeyboardInterrupt:
            typer.echo(err=True)
            return False
        if not sys.stdin.isatty():  # the answer was not echoed: end the prompt's line
            typer.echo(err=True)
        answer = answer.strip().lower()
        if answer in ("y", "yes"):
            return True
        if answer in ("", "n", "no"):
            return False
        typer.echo("Error: invalid input", err=True)


# --- commands -----------------------------------------------------------------------------------------------


@app.command("show")
@reports_errors
def show(
    file: Annotated[
        str | None,
        typer.Argument(
            metavar="FILE",
            help="Show the document this file declares (a Pulumi program translated) instead of the org's.",
            show_default=False,
        ),
    ] = None,
    program_org: ProgramOrgOption = None,
    server: ServerOption = None,
    token: TokenOption = None,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the organization's current declaration (YAML; apply it as it is and nothing changes)."""
    if file is None:
        if program_org:
            raise CliError("--program-org goes with a FILE that is a Pulumi program")
        conn, name = connect_to_org(server, token, org)
        with conn.client() as api:
            document = api.get_autodeploy(name)
        if as_json:
            print_json(document)
        else:
            _print_yaml(document)
        return
    if not org:
        saved = credentials.load()
        org = saved.org if saved is not None else None
    if not org:
        raise CliError(
            "no organization: pass --org, set CASCADE_ORG or run `cascade login --org ORG` "
            "(a program's ${pulumi.organization} is that organization)"
        )
    source, document, imported = _load(file, org, program_org)
    if imported is None:
        try:
            document = to_document(parse_document(document))
        except InvalidInput as exc:
            raise CliError(f"{source}: {exc.message}") from None
    if as_json:
        print_json({"document": document, **_findings(imported)})
    else:
        _print_yaml(document)
    if imported is not None and imported.problems:
        _report_problems(source, imported, org)
        raise CliError("the document above leaves out what the program declares but cannot be honoured")


@app.command("diff")
@reports_errors
def diff(
    file: FileArgument,
    program_org: ProgramOrgOption = None,
    server: ServerOption = None,
    token: TokenOption = None,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show what applying FILE would create, update and delete (nothing is changed)."""
    conn, name = connect_to_org(server, token, org)
    source, document, imported = _load(file, name, program_org)
    # The diff, then what it leaves out, then the error that refers to it (as `show FILE` prints them).
    try:
        with conn.client() as api:
            answer = api.put_autodeploy(name, document, dry_run=True)
    except CliError:
        if imported is not None and imported.problems:
            _report_problems(source, imported, name)
        raise
    if as_json:
        print_json(answer | _findings(imported))
    else:
        _print_diff(answer.get("diff") or {}, partial=imported is not None and bool(imported.problems))
    if imported is not None and imported.problems:
        _report_problems(source, imported, name)
        raise CliError(f"the diff leaves out what {source} declares but cannot be honoured; apply would refuse it")


@app.command("apply")
@reports_errors
def apply(
    file: FileArgument,
    yes: YesOption = False,
    program_org: ProgramOrgOption = None,
    server: ServerOption = None,
    token: TokenOption = None,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make the organization's managed deployment webhooks match FILE, in one transaction."""
    conn, name = connect_to_org(server, token, org)
    source, document, imported = _load(file, name, program_org)
    if imported is not None and imported.problems:
        _report_problems(source, imported, name)
        raise CliError(f"nothing was applied: {source} declares things stackcascade cannot honour (listed above)")
    shown: str | None = None  # the ETag of the diff shown: what is applied must be exactly that
    with conn.client() as api:
        if not yes:
            planned = api.put_autodeploy(name, document, dry_run=True).get("diff") or {}
            shown = api.last_exchange.etag if api.last_exchange else None
            if not _changes_anything(planned):
                if as_json:
                    print_json({"applied": False, "diff": planned})
                else:
                    _print_diff(planned)
                return
            if not as_json:
                _print_diff(planned)
            if not _confirm(f"Apply these changes to organization {name}?"):
                raise CliError("not applied (pass --yes to apply without asking)")
        result = api.put_autodeploy(name, document, dry_run=False, if_match=shown)
    if as_json:
        print_json(result)
        return
    applied = result.get("diff") or {}
    if yes:
        _print_diff(applied)
    if _changes_anything(applied):
        typer.echo(f"Applied to organization {name}: {_summary(applied, done=True)}.")
