"""Auto Deploy declarations (design 2 and 5.3): the document, its diff against the managed edges, and
the import of a Pulumi YAML program that declares ``auto-deploy:AutoDeployer`` and
``pulumiservice:Webhook`` resources.

The document::

    stacks:
      - project: network
        stack: prod
        triggerOn: outputs-changed        # default of this stack's outgoing edges (optional)
        requireApproval: false            # the stack's own gate (optional; absent = left as it is)
        downstreamRefs:
          - database/prod                 # an edge with the defaults
          - ref: cluster/prod             # an edge with options of its own
            triggerOn: always
            requireApproval: true         # this edge's gate
            filters: [update_succeeded]
            groups: []
            displayName: deploy the cluster

Edges are keyed by (upstream, downstream), never by their position in a list: reordering entries or
refs changes nothing. A stack entry's ``triggerOn`` is the default of its outgoing edges ("per
declaration"); an edge's own ``triggerOn`` wins ("per edge"). A stack entry's ``requireApproval``
is that stack's gate (``stacks.require_approval``): when absent, the gate is not touched.

Everything here is pure: YAML is parsed by the caller, the database is the service's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from stackcascade.domain.errors import InvalidInput
from stackcascade.domain.names import check_name
from stackcascade.domain.webhook_events import check_filters, check_groups

TRIGGER_ON: Final = ("always", "outputs-changed")
DEFAULT_TRIGGER_ON: Final = "always"
DEFAULT_FILTERS: Final = ("update_succeeded",)
MAX_DISPLAY_NAME: Final = 200
MAX_WEBHOOK_NAME: Final = 100
NAME_PREFIX: Final = "autodeploy-"

# --- the declaration ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EdgeSpec:
    """One deployment edge ``upstream -> downstream`` ("project/stack" both) and its options.

    ``webhook`` names the webhook that carries a current edge; it takes no part in comparisons.
    """

    upstream: str
    downstream: str
    trigger_on: str = DEFAULT_TRIGGER_ON
    require_approval: bool = False
    filters: tuple[str, ...] = DEFAULT_FILTERS
    groups: tuple[str, ...] = ()
    display_name: str = ""  # "" = the default: the downstream stack, as the AutoDeployer names its webhooks
    active: bool = True
    webhook: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "filters", tuple(sorted(set(self.filters))))
        object.__setattr__(self, "groups", tuple(sorted(set(self.groups))))
        object.__setattr__(self, "display_name", self.display_name or self.downstream)

    @property
    def key(self) -> tuple[str, str]:
        return (self.upstream, self.downstream)


# The options an update can change, by their document spelling, and the attribute that holds each.
EDGE_FIELDS: Final = (
    ("triggerOn", "trigger_on"),
    ("requireApproval", "require_approval"),
    ("filters", "filters"),
    ("groups", "groups"),
    ("displayName", "display_name"),
    ("active", "active"),
)


@dataclass(frozen=True, slots=True)
class StackEntry:
    """One ``stacks[]`` entry: a stack, its outgoing edges, its edges' default triggerOn and its gate."""

    project: str
    stack: str
    edges: tuple[EdgeSpec, ...] = ()
    trigger_on: str | None = None
    require_approval: bool | None = None

    @property
    def ref(self) -> str:
        return f"{self.project}/{self.stack}"


@dataclass(frozen=True, slots=True)
class Declaration:
    entries: tuple[StackEntry, ...] = ()

    def edges(self) -> list[EdgeSpec]:
        """Every declared edge, sorted by (upstream, downstream)."""
        return sorted((edge for entry in self.entries for edge in entry.edges), key=lambda edge: edge.key)

    def gates(self) -> dict[str, bool]:
        """The stack gates the declaration sets: only entries that give ``requireApproval``."""
        return {entry.ref: entry.require_approval for entry in self.entries if entry.require_approval is not None}

    def stacks(self) -> list[str]:
        """Every stack the declaration names, as an entry or as a downstream ref."""
        named = {entry.ref for entry in self.entries} | {edge.downstream for edge in self.edges()}
        return sorted(named)


_DOCUMENT_KEYS: Final = {"stacks": "stacks"}
_ENTRY_KEYS: Final = {
    "project": "project",
    "stack": "stack",
    "downstreamrefs": "downstreamRefs",
    "triggeron": "triggerOn",
    "requireapproval": "requireApproval",
}
_EDGE_KEYS: Final = {
    "ref": "ref",
    "triggeron": "triggerOn",
    "requireapproval": "requireApproval",
    "filters": "filters",
    "groups": "groups",
    "displayname": "displayName",
}


def _known(value: Mapping[Any, Any], keys: Mapping[str, str], where: str) -> dict[str, Any]:
    """The keys of ``value`` by their spelling here, matched case-insensitively; null = not given."""
    found: dict[str, Any] = {}
    for key, item in value.items():
        name = keys.get(str(key).lower())
        if name is None:
            raise InvalidInput(f"{where}: unknown key {key!r}; known keys: {', '.join(keys.values())}")
        if name in found:
            raise InvalidInput(f"{where}: {name!r} is given twice")
        if item is not None:
            found[name] = item
    return found


NOT_SHOWN: Final = "(a secret value, not shown)"


@dataclass(frozen=True, slots=True)
class _Secret:
    """A value derived from a secret config value of a Pulumi program: it is never quoted, printed or applied."""

    value: object = field(repr=False)

    def __repr__(self) -> str:
        return NOT_SHOWN

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return NOT_SHOWN


def _is_secret(value: object) -> bool:
    """Whether ``value`` is, or holds, a value derived from a secret."""
    if isinstance(value, _Secret):
        return True
    if isinstance(value, list):
        return any(_is_secret(item) for item in value)
    if isinstance(value, Mapping):
        return any(_is_secret(item) for item in value.values())
    return False


def _reveal(value: object) -> object:
    """``value`` without its secret marks, to compute with; the caller marks what it computes."""
    if isinstance(value, _Secret):
        return _reveal(value.value)
    if isinstance(value, list):
        return [_reveal(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _reveal(item) for key, item in value.items()}
    return value


def _show(value: object) -> str:
    """A value as a message shows it: strings quoted, YAML spellings for the rest, never a secret."""
    if isinstance(value, _Secret):
        return NOT_SHOWN
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a map"
    return type(value).__name__


def ref_problem(value: object) -> str | None:
    """Why ``value`` is not a downstream reference (``project/stack`` in the same organization), or None."""
    if not isinstance(value, str):
        return f"a stack reference is a 'project/stack' string, got {_show(value)}"
    project, sep, stack = value.partition("/")
    if not sep or "/" in stack:
        return f"{value!r} is not 'project/stack' (a stack of the same organization)"
    try:
        check_name("project", project)
        check_name("stack", stack)
    except InvalidInput as exc:
        return exc.message
    return None


def parse_ref(value: object, where: str) -> str:
    """A downstream reference: ``project/stack`` in the same organization."""
    problem = ref_problem(value)
    if problem is not None:
        raise InvalidInput(f"{where}: {problem}")
    assert isinstance(value, str)
    return value


def _trigger_on(value: object, where: str) -> str:
    if value not in TRIGGER_ON:
        raise InvalidInput(f"{where}: triggerOn must be one of {', '.join(TRIGGER_ON)}, got {_show(value)}")
    return str(value)


def _flag(value: object, name: str, where: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(f"{where}: {name} must be true or false, got {_show(value)}")
    return value


def _display_name(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{where}: displayName must be a non-empty string")
    if len(value) > MAX_DISPLAY_NAME or any(ord(c) < 32 for c in value):
        raise InvalidInput(
            f"{where}: displayName must be at most {MAX_DISPLAY_NAME} characters without control characters"
        )
    return value


def _checked(check: Any, value: object, where: str) -> list[str]:
    try:
        result: list[str] = check(value)
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: {exc.message}") from None
    return result


def _edge(upstream: str, item: object, default_trigger: str, where: str) -> EdgeSpec:
    if not isinstance(item, Mapping):
        return EdgeSpec(upstream, parse_ref(item, where), trigger_on=default_trigger)
    fields = _known(item, _EDGE_KEYS, where)
    if "ref" not in fields:
        raise InvalidInput(f"{where}: an edge object needs 'ref': the downstream stack as 'project/stack'")
    downstream = parse_ref(fields["ref"], where)
    where = f"{where} ({downstream})"
    filters = fields.get("filters", list(DEFAULT_FILTERS))
    return EdgeSpec(
        upstream,
        downstream,
        trigger_on=_trigger_on(fields["triggerOn"], where) if "triggerOn" in fields else default_trigger,
        require_approval=_flag(fields.get("requireApproval", False), "requireApproval", where),
        filters=tuple(_checked(lambda v: check_filters(v, stack_scoped=True), filters, where)),
        groups=tuple(_checked(check_groups, fields.get("groups"), where)),
        display_name=_display_name(fields["displayName"], where) if "displayName" in fields else "",
    )


def _entry(index: int, item: object) -> StackEntry:
    where = f"stacks[{index}]"
    if not isinstance(item, Mapping):
        raise InvalidInput(f"{where}: a stack entry is an object with project, stack and downstreamRefs")
    fields = _known(item, _ENTRY_KEYS, where)
    for name in ("project", "stack"):
        if name not in fields:
            raise InvalidInput(f"{where}: {name!r} is required")
    try:
        project = check_name("project", fields["project"])
        stack = check_name("stack", fields["stack"])
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: {exc.message}") from None
    ref = f"{project}/{stack}"
    where = f"{where} ({ref})"
    trigger = _trigger_on(fields["triggerOn"], where) if "triggerOn" in fields else None
    gate = _flag(fields["requireApproval"], "requireApproval", where) if "requireApproval" in fields else None
    refs = fields.get("downstreamRefs", [])
    if not isinstance(refs, list):
        raise InvalidInput(f"{where}: downstreamRefs must be a list of 'project/stack' references")
    edges: dict[str, EdgeSpec] = {}
    for position, raw in enumerate(refs):
        edge = _edge(ref, raw, trigger or DEFAULT_TRIGGER_ON, f"{where}.downstreamRefs[{position}]")
        if edge.downstream == ref:
            raise InvalidInput(f"{where}.downstreamRefs[{position}]: a stack cannot trigger itself")
        if edge.downstream in edges:
            raise InvalidInput(f"{where}.downstreamRefs[{position}]: {edge.downstream} is listed twice")
        edges[edge.downstream] = edge
    return StackEntry(project, stack, tuple(edges[name] for name in sorted(edges)), trigger, gate)


def parse_document(data: object) -> Declaration:
    """Validate an Auto Deploy document; every error names the entry (``stacks[2] (db/prod): ...``)."""
    if not isinstance(data, Mapping):
        raise InvalidInput("an Auto Deploy document is an object: {stacks: [{project, stack, downstreamRefs}]}")
    fields = _known(data, _DOCUMENT_KEYS, "the document")
    if "stacks" not in fields:
        raise InvalidInput("the document needs 'stacks': a list of {project, stack, downstreamRefs} (may be empty)")
    items = fields["stacks"]
    if not isinstance(items, list):
        raise InvalidInput("'stacks' must be a list of {project, stack, downstreamRefs} entries")
    entries: dict[str, tuple[int, StackEntry]] = {}
    for index, item in enumerate(items):
        entry = _entry(index, item)
        if entry.ref in entries:
            first = entries[entry.ref][0]
            raise InvalidInput(
                f"stacks[{index}] ({entry.ref}): the stack is already declared by stacks[{first}]; "
                "declare each stack once, with all of its downstreamRefs"
            )
        entries[entry.ref] = (index, entry)
    return Declaration(tuple(entries[ref][1] for ref in sorted(entries)))


def _edge_document(edge: EdgeSpec, default_trigger: str) -> str | dict[str, Any]:
    """An edge as the document writes it: a plain ref when every option is the default."""
    options: dict[str, Any] = {}
    if edge.trigger_on != default_trigger:
        options["triggerOn"] = edge.trigger_on
    if edge.require_approval:
        options["requireApproval"] = True
    if edge.filters != tuple(sorted(DEFAULT_FILTERS)):
        options["filters"] = list(edge.filters)
    if edge.groups:
        options["groups"] = list(edge.groups)
    if edge.display_name != edge.downstream:
        options["displayName"] = edge.display_name
    return {"ref": edge.downstream, **options} if options else edge.downstream


def to_document(declaration: Declaration) -> dict[str, Any]:
    """The document of a declaration, defaults left out, entries and refs sorted."""
    stacks: list[dict[str, Any]] = []
    for entry in sorted(declaration.entries, key=lambda e: e.ref):
        item: dict[str, Any] = {"project": entry.project, "stack": entry.stack}
        if entry.trigger_on is not None:
            item["triggerOn"] = entry.trigger_on
        if entry.require_approval is not None:
            item["requireApproval"] = entry.require_approval
        default_trigger = entry.trigger_on or DEFAULT_TRIGGER_ON
        item["downstreamRefs"] = [
            _edge_document(edge, default_trigger) for edge in sorted(entry.edges, key=lambda e: e.downstream)
        ]
        stacks.append(item)
    return {"stacks": stacks}


def declaration_of(edges: Iterable[EdgeSpec], gates: Mapping[str, bool]) -> Declaration:
    """The declaration that describes these (managed) edges and the gates of the stacks they touch.

    Every stack at either end of an edge gets an entry, and so does every gated stack; each entry
    states its gate, so applying the result changes nothing. An entry's ``triggerOn`` is set when all
    its edges share one that is not the default.
    """
    by_upstream: dict[str, list[EdgeSpec]] = {}
    for edge in edges:
        by_upstream.setdefault(edge.upstream, []).append(edge)
        by_upstream.setdefault(edge.downstream, [])
    for ref, gated in gates.items():
        if gated:
            by_upstream.setdefault(ref, [])
    entries = []
    for ref in sorted(by_upstream):
        project, _, stack = ref.partition("/")
        outgoing = by_upstream[ref]
        triggers = {edge.trigger_on for edge in outgoing}
        shared = triggers.pop() if len(triggers) == 1 else None
        entry_trigger = shared if shared is not None and shared != DEFAULT_TRIGGER_ON else None
        entries.append(
            StackEntry(
                project,
                stack,
                tuple(sorted(outgoing, key=lambda e: e.downstream)),
                trigger_on=entry_trigger,
                require_approval=bool(gates.get(ref, False)),
            )
        )
    return Declaration(tuple(entries))


# --- the diff -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EdgeChange:
    """A current edge whose options change; ``after`` carries the webhook of ``before``."""

    before: EdgeSpec
    after: EdgeSpec
    fields: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GateChange:
    stack: str
    before: bool
    after: bool


@dataclass(frozen=True, slots=True)
class Diff:
    create: tuple[EdgeSpec, ...] = ()
    update: tuple[EdgeChange, ...] = ()
    delete: tuple[EdgeSpec, ...] = ()
    unchanged: tuple[EdgeSpec, ...] = ()
    gates: tuple[GateChange, ...] = ()

    @property
    def changes_anything(self) -> bool:
        return bool(self.create or self.update or self.delete or self.gates)


def changed_fields(before: EdgeSpec, after: EdgeSpec) -> tuple[str, ...]:
    return tuple(name for name, attribute in EDGE_FIELDS if getattr(before, attribute) != getattr(after, attribute))


def diff(current: Iterable[EdgeSpec], desired: Iterable[EdgeSpec]) -> Diff:
    """What turns the ``current`` managed edges into the ``desired`` ones, keyed by (upstream, downstream).

    A second current webhook on one edge (made through the webhook API) is deleted; the first, by
    webhook name, is kept and updated.
    """
    wanted: dict[tuple[str, str], EdgeSpec] = {}
    for edge in desired:
        if edge.key in wanted:
            raise InvalidInput(f"the edge {edge.upstream} -> {edge.downstream} is declared twice")
        wanted[edge.key] = edge
    kept: dict[tuple[str, str], EdgeSpec] = {}
    delete: list[EdgeSpec] = []
    for edge in sorted(current, key=lambda e: (e.key, e.webhook)):
        if edge.key in wanted and edge.key not in kept:
            kept[edge.key] = edge
        else:
            delete.append(edge)
    create: list[EdgeSpec] = []
    update: list[EdgeChange] = []
    unchanged: list[EdgeSpec] = []
    for key in sorted(wanted):
        after = wanted[key]
        before = kept.get(key)
        if before is None:
            create.append(after)
            continue
        fields = changed_fields(before, after)
        if fields:
            update.append(EdgeChange(before, _with_webhook(after, before.webhook), fields))
        else:
            unchanged.append(before)
    return Diff(tuple(create), tuple(update), tuple(delete), tuple(unchanged))


def _with_webhook(edge: EdgeSpec, webhook: str) -> EdgeSpec:
    return dataclasses.replace(edge, webhook=webhook)


def gate_changes(current: Mapping[str, bool], desired: Mapping[str, bool]) -> tuple[GateChange, ...]:
    """The stack gates that ``desired`` changes (stacks it does not mention keep theirs)."""
    return tuple(
        GateChange(stack, bool(current.get(stack, False)), after)
        for stack, after in sorted(desired.items())
        if bool(current.get(stack, False)) != after
    )


def with_gates(changes: Diff, gates: tuple[GateChange, ...]) -> Diff:
    return Diff(changes.create, changes.update, changes.delete, changes.unchanged, gates)


def edge_document(edge: EdgeSpec, webhook: str = "") -> dict[str, Any]:
    """An edge in API answers: both ends, every option, and the webhook that carries it."""
    return {
        "upstream": edge.upstream,
        "downstream": edge.downstream,
        "webhook": webhook or edge.webhook,
        "triggerOn": edge.trigger_on,
        "requireApproval": edge.require_approval,
        "filters": list(edge.filters),
        "groups": list(edge.groups),
        "displayName": edge.display_name,
        "active": edge.active,
    }


def _value(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def diff_document(changes: Diff, new_names: Mapping[tuple[str, str], str] | None = None) -> dict[str, Any]:
    """The diff as the API answers it; ``new_names`` are the webhook names that creates get."""
    names = new_names or {}
    return {
        "create": [edge_document(edge, names.get(edge.key, "")) for edge in changes.create],
        "update": [
            edge_document(change.after)
            | {
                "changes": {
                    name: {
                        "from": _value(getattr(change.before, attribute)),
                        "to": _value(getattr(change.after, attribute)),
                    }
                    for name, attribute in EDGE_FIELDS
                    if name in change.fields
                }
            }
            for change in changes.update
        ],
        "delete": [edge_document(edge) for edge in changes.delete],
        "unchanged": [edge_document(edge) for edge in changes.unchanged],
        "gates": [{"stack": gate.stack, "from": gate.before, "to": gate.after} for gate in changes.gates],
    }


def managed_webhook_name(downstream: str, taken: Collection[str]) -> str:
    """``autodeploy-<project>-<stack>``, unique among the upstream stack's webhook names (``taken``).

    Too long a name, or one already taken (``a-b/c`` and ``a/b-c`` read alike), gets a digest of the
    downstream reference instead of its tail.
    """
    project, _, stack = downstream.partition("/")
    base = f"{NAME_PREFIX}{project}-{stack}"
    if len(base) <= MAX_WEBHOOK_NAME and base not in taken:
        return base
    digest = hashlib.sha256(downstream.encode()).hexdigest()
    for width in (10, 16, 24, 32, 64):
        candidate = f"{base[: MAX_WEBHOOK_NAME - width - 1]}-{digest[:width]}"
        if candidate not in taken:
            return candidate
    counter = 2
    while True:  # only reachable when someone picked these exact names on purpose
        suffix = f"-{digest[:16]}-{counter}"
        candidate = f"{base[: MAX_WEBHOOK_NAME - len(suffix)]}{suffix}"
        if candidate not in taken:
            return candidate
        counter += 1


# --- Pulumi YAML programs -----------------------------------------------------------------------------

AUTO_DEPLOYER: Final = "auto-deploy:AutoDeployer"
WEBHOOK: Final = "pulumiservice:Webhook"
_TYPES: Final = {
    "auto-deploy:AutoDeployer": AUTO_DEPLOYER,
    "auto-deploy:index:AutoDeployer": AUTO_DEPLOYER,
    "pulumiservice:Webhook": WEBHOOK,
    "pulumiservice:index:Webhook": WEBHOOK,
}
_AUTO_DEPLOYER_INPUTS: Final = ("organization", "project", "stack", "downstreamRefs")
_WEBHOOK_INPUTS: Final = (
    "organizationName",
    "projectName",
    "stackName",
    "environmentName",
    "format",
    "payloadUrl",
    "active",
    "displayName",
    "filters",
    "groups",
    "secret",
)
# Top-level keys of a Pulumi project file that say nothing about the graph (``outputs`` are evaluated).
# The descriptive ones pass silently; the others would change how Pulumi runs the program, so the import
# says that they are not used here (never quoting them: ``backend.url`` may carry credentials).
_PROGRAM_KEYS_DESCRIPTIVE: Final = frozenset({"name", "description", "author", "license", "website", "template"})
_PROGRAM_KEY_NOTES: Final = {
    "backend": "the declaration is applied to this stackcascade server, not to the program's backend; it is not read",
    "options": "project options change how Pulumi runs the program; the import does not run it, so they have no effect",
    "plugins": "no plugin is installed or run: the import reads the program's resources itself",
    "packages": "no package is installed or run: the import reads the program's resources itself",
    "stackConfigDir": "stack configuration files are not read: only the config values and defaults written in "
    "the program are",
}
_PROGRAM_KEYS_WITHOUT_EFFECT: Final = _PROGRAM_KEYS_DESCRIPTIVE | frozenset(_PROGRAM_KEY_NOTES)
_PROGRAM_KEYS: Final = _PROGRAM_KEYS_WITHOUT_EFFECT | {
    "runtime",
    "config",
    "configuration",
    "variables",
    "resources",
    "outputs",
}
# Resource options that change nothing about which webhooks exist.
_OPTIONS_WITHOUT_EFFECT: Final = frozenset(
    {"dependsOn", "parent", "version", "pluginDownloadURL", "aliases", "customTimeouts", "additionalSecretOutputs"}
)
_OPTION_REASONS: Final = {
    "protect": "a managed webhook is deleted when its edge leaves the declaration; it cannot be protected",
    "retainOnDelete": "a managed webhook is deleted when its edge leaves the declaration; it cannot be retained",
    "deletedWith": "a managed webhook is deleted only when its edge leaves the declaration",
    "ignoreChanges": "every declared option of a managed webhook is applied; none can be ignored",
    "import": "managed webhooks are created by the declaration; an existing webhook cannot be adopted",
    "provider": "stackcascade applies the declaration to its own server, not through a Pulumi provider",
    "providers": "stackcascade applies the declaration to its own server, not through a Pulumi provider",
}


@dataclass(frozen=True, slots=True)
class Problem:
    """Something in a Pulumi program that the import cannot honour, and where it is."""

    where: str
    message: str
    code: str = "unsupported"  # "organization" when resources name another organization
    subject: str = ""  # for "organization": that organization

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(frozen=True, slots=True)
class Note:
    """Something in a Pulumi program that is accepted but has no effect here (never a value: it may be secret)."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(frozen=True, slots=True)
class ProgramImport:
    """Our document for a Pulumi program, what in the program it could not honour, and what has no effect.

    With any problem the document is partial: it must not be applied. Notes do not stop it.
    """

    document: dict[str, Any]
    problems: tuple[Problem, ...]
    auto_deployers: int = 0
    webhooks: int = 0
    notes: tuple[Note, ...] = ()


def is_pulumi_program(data: object) -> bool:
    """A Pulumi YAML program declares ``resources``; our document declares ``stacks``."""
    return isinstance(data, Mapping) and "resources" in data and "stacks" not in data


class _Unresolved(Exception):
    """A value the import cannot know without running Pulumi; ``reported`` once recorded at its origin."""

    def __init__(self, message: str, where: str = "", *, reported: bool = False, after_creation: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.where = where
        self.reported = reported
        # Known to Pulumi once it has created a resource: fine wherever nothing applied here needs it.
        self.after_creation = after_creation


_MISSING: Final = object()
_ROOT: Final = re.compile(r"[^.\[\]\s]+")
_PROPERTY: Final = re.compile(r"\.([^.\[\]\s]+)")
_INDEX: Final = re.compile(r"\[(\d+)\]")
_KEY: Final = re.compile(r"\[\"([^\"]*)\"\]")


def _parse_reference(expression: str) -> tuple[str, list[str | int]]:
    """``a.b[0]["c"]`` as ``("a", ["b", 0, "c"])``."""
    text = expression.strip()
    root = _ROOT.match(text)
    if root is None:
        raise _Unresolved(f"${{{expression}}} is not a reference to a variable, config value or resource output")
    position = root.end()
    accessors: list[str | int] = []
    while position < len(text):
        for pattern, convert in ((_PROPERTY, str), (_INDEX, int), (_KEY, str)):
            match = pattern.match(text, position)
            if match is not None:
                accessors.append(convert(match.group(1)))
                position = match.end()
                break
        else:
            raise _Unresolved(f"${{{expression}}} is not a reference this import can read")
    return root.group(0), accessors


@dataclass(frozen=True, slots=True)
class _Resource:
    name: str
    kind: str  # AUTO_DEPLOYER, WEBHOOK, or the type token of anything else
    properties: Mapping[Any, Any]


class _Program:
    """Evaluates the parts of a Pulumi YAML program that are knowable without running it."""

    def __init__(self, program: Mapping[Any, Any], organization: str, aliases: Collection[str]) -> None:
        self.organization = organization
        self.aliases = frozenset(aliases)
        self.program_name = program.get("name")
        self.problems: list[Problem] = []
        self.notes: list[Note] = []
        self._values: dict[str, object] = {}
        self._failed: set[str] = set()
        self._active: list[str] = []
        # Set once every resource is read: what is evaluated then (variables and outputs no resource uses)
        # may be a value known only after Pulumi created a resource; that has no effect here, it is a note.
        self._only_noted = False
        self.variables = self._section(program, "variables")
        self.config: dict[str, object] = {}
        for section in ("configuration", "config"):
            self.config.update(self._section(program, section))
        self._config_used: set[str] = set()
        self.outputs = self._section(program, "outputs")
        raw_resources = self._section(program, "resources")
        self.resources: dict[str, _Resource] = {}
        for name, body in raw_resources.items():
            resource = self._resource(name, body)
            if resource is not None:
                self.resources[name] = resource
        for name in sorted(set(self.variables) & (set(self.resources) | set(self.config))):
            self.problem(f"variables.{name}", f"{name!r} names both a variable and a resource or config value")

    # -- reporting ---------------------------------------------------------------------------------------

    def problem(self, where: str, message: str, code: str = "unsupported", subject: str = "") -> None:
        found = Problem(where, message, code, subject)
        if found not in self.problems:
            self.problems.append(found)

    def _section(self, program: Mapping[Any, Any], key: str) -> dict[str, object]:
        value = program.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.problem(key, f"{key} must be a map of names to values")
            return {}
        return {str(name): item for name, item in value.items()}

    def _resource(self, name: str, body: object) -> _Resource | None:
        where = f"resources.{name}"
        if not isinstance(body, Mapping):
            self.problem(where, "a resource is a map with 'type' and 'properties'")
            return None
        token = body.get("type")
        if not isinstance(token, str):
            self.problem(where, "the resource has no 'type'")
            return None
        for key in body:
            if key not in ("type", "properties", "options"):
                reason = "reads an existing resource" if key == "get" else "is not read by this import"
                self.problem(f"{where}.{key}", f"{key!r} {reason}; only type, properties and options are honoured")
        options = body.get("options")
        if options is not None:
            self._options(where, options)
        properties = body.get("properties")
        if properties is None:
            properties = {}
        if not isinstance(properties, Mapping):
            self.problem(f"{where}.properties", "properties must be a map")
            properties = {}
        return _Resource(name, _TYPES.get(token, token), properties)

    def _options(self, where: str, options: object) -> None:
        if not isinstance(options, Mapping):
            self.problem(f"{where}.options", "options must be a map")
            return
        for key, value in options.items():
            if key in _OPTIONS_WITHOUT_EFFECT or value in (None, False, []):
                continue
            reason = _OPTION_REASONS.get(str(key), "this resource option cannot be honoured")
            self.problem(f"{where}.options.{key}", reason)

    # -- evaluation --------------------------------------------------------------------------------------

    def evaluate_the_rest(self) -> None:
        """Evaluate what no resource refers to, as Pulumi does: every variable, config value and output.

        What cannot be evaluated is a problem wherever it is, but for a value Pulumi knows only once it has
        created a resource (``downstreamWebhooks``, a webhook's ``name``): no resource uses it (those were read
        already), so it has no effect here and is noted. Provider configuration (``aws:region``,
        ``pulumiservice:accessToken``) and outputs that evaluate have no effect here either: they are noted.
        """
        self._only_noted = True
        for name, raw in self.variables.items():
            self._settles(f"variables.{name}", raw)
        for name in self.config:
            namespace, colon, _ = name.partition(":")
            if colon and namespace != self.program_name:
                if name not in self._config_used:
                    what = "Pulumi itself" if namespace == "pulumi" else f"the {namespace} provider"
                    self.notes.append(
                        Note(
                            f"config.{name}",
                            f"configures {what}, which stackcascade does not use: the declaration is applied to "
                            "the cascade server with your cascade token; this value is not read",
                        )
                    )
                continue
            try:
                self._config(name)
            except _Unresolved as exc:
                if not exc.reported:
                    self.problem(exc.where, exc.message)
        evaluated = [name for name, raw in self.outputs.items() if self._settles(f"outputs.{name}", raw)]
        if evaluated:
            verb, them = ("has", "it") if len(evaluated) == 1 else ("have", "them")
            self.notes.append(
                Note(
                    "outputs",
                    f"{', '.join(evaluated)} {verb} no effect: a declaration applied here makes no stack to export "
                    f"{them} from",
                )
            )

    def _settles(self, path: str, raw: object) -> bool:
        """Whether the value at ``path`` evaluates; a failure is reported (once) by ``named``."""
        try:
            self.named(path, raw)
        except _Unresolved:
            return False
        return True

    def named(self, path: str, raw: object, *, secret: str | None = None) -> object:
        """The value at ``path``, evaluated once; a failure is reported once, where it happens.

        ``secret``: the message to report instead of one that may quote the (secret) text at ``path``.
        """
        if path in self._values:
            return self._values[path]
        if path in self._failed:
            raise _Unresolved(f"{path} could not be resolved", path, reported=True)
        if path in self._active:
            loop = [*self._active[self._active.index(path) :], path]
            raise _Unresolved(f"the values refer to each other in a loop: {' -> '.join(loop)}", path)
        self._active.append(path)
        try:
            value = self.evaluate(raw, path)
        except _Unresolved as exc:
            self._failed.add(path)
            message = exc.message if secret is None or exc.reported else secret
            if not exc.reported and exc.after_creation and self._only_noted:
                self.notes.append(Note(exc.where or path, f"{message}: not evaluated, it has no effect here"))
            elif not exc.reported:
                self.problem(exc.where or path, message)
            raise _Unresolved(message, exc.where or path, reported=True) from None
        finally:
            self._active.pop()
        self._values[path] = value
        return value

    def evaluate(self, raw: object, where: str) -> object:
        if isinstance(raw, str):
            return self._interpolate(raw, where)
        if isinstance(raw, list):
            return [self.evaluate(item, f"{where}[{index}]") for index, item in enumerate(raw)]
        if isinstance(raw, Mapping):
            functions = [key for key in raw if isinstance(key, str) and key.startswith("fn::")]
            if functions:
                if len(raw) != 1:
                    raise _Unresolved("a function call is a map with exactly one fn:: key", where)
                return self._function(functions[0], raw[functions[0]], where)
            return {str(key): self.evaluate(value, f"{where}.{key}") for key, value in raw.items()}
        return raw

    def _interpolate(self, text: str, where: str) -> object:
        parts: list[object] = []
        literal: list[str] = []
        position = 0
        while position < len(text):
            if text.startswith("$${", position):
                literal.append("${")
                position += 3
            elif text.startswith("${", position):
                end = text.find("}", position + 2)
                if end < 0:
                    raise _Unresolved(f"unclosed '${{' in {text!r}", where)
                if literal:
                    parts.append("".join(literal))
                    literal = []
                parts.append(self._reference(text[position + 2 : end], where))
                position = end + 1
            else:
                literal.append(text[position])
                position += 1
        if literal:
            parts.append("".join(literal))
        if len(parts) == 1 and not isinstance(parts[0], str):
            return parts[0]  # "${x}" alone is x itself, whatever its type
        pieces = []
        for part in map(_reveal, parts):
            if isinstance(part, bool):
                pieces.append("true" if part else "false")
            elif isinstance(part, str | int | float):
                pieces.append(str(part))
            else:
                raise _Unresolved(f"{text!r} puts a {type(part).__name__} into a string", where)
        joined = "".join(pieces)
        return _Secret(joined) if _is_secret(parts) else joined  # a string that holds a secret is one

    def _reference(self, expression: str, where: str) -> object:
        try:
            root, accessors = _parse_reference(expression)
        except _Unresolved as exc:
            raise _Unresolved(exc.message, where) from None
        value: object
        if root == "pulumi":
            value = self._pulumi(expression, accessors, where)
            accessors = accessors[1:]
        elif root in self.variables:
            value = self.named(f"variables.{root}", self.variables[root])
        elif root in self.resources:
            if not accessors or not isinstance(accessors[0], str):
                raise _Unresolved(
                    f"${{{expression}}} is the resource itself, not a value; use one of its outputs, e.g. ${{{root}.ref}}",
                    where,
                )
            value = self._output(self.resources[root], accessors[0], where)
            accessors = accessors[1:]
        elif root in self.config:
            self._config_used.add(root)
            value = self._config(root)
        else:
            raise _Unresolved(
                f"${{{expression}}}: there is no variable, config value or resource named {root!r}", where
            )
        for accessor in accessors:
            value = self._access(value, accessor, expression, where)
        return value

    def _pulumi(self, expression: str, accessors: list[str | int], where: str) -> object:
        name = accessors[0] if accessors else None
        if name == "organization":
            return self.organization
        if name == "project" and isinstance(self.program_name, str):
            return self.program_name
        if name == "stack":
            raise _Unresolved(
                "${pulumi.stack} is the stack the program is run in, which an import does not have", where
            )
        raise _Unresolved(f"${{{expression}}} is not known without running the program", where)

    def _config(self, name: str) -> object:
        raw = self.config[name]
        if isinstance(raw, Mapping):
            for key in ("default", "value"):
                if key in raw:
                    # A secret's own text must not reach a message: what fails in it is said, not quoted.
                    if raw.get("secret") is not True:
                        return self.named(f"config.{name}", raw[key])
                    secret = f"config value {name!r} is secret and its {key} does not evaluate (not shown)"
                    value = self.named(f"config.{name}", raw[key], secret=secret)
                    return value if isinstance(value, _Secret) else _Secret(value)
            raise _Unresolved(
                f"config value {name!r} has no default: its value is set per stack (pulumi config set), "
                "which an import cannot read; give it a default in the program",
                f"config.{name}",
            )
        return self.named(f"config.{name}", raw)

    def _access(self, value: object, accessor: str | int, expression: str, where: str) -> object:
        if isinstance(value, _Secret):  # a part of a secret is secret; a failure says so, not what it is
            try:
                return _Secret(self._access(value.value, accessor, expression, where))
            except _Unresolved:
                raise _Unresolved(f"${{{expression}}}: {accessor!r} is not in {_show(value)}", where) from None
        if isinstance(accessor, int) and isinstance(value, list) and 0 <= accessor < len(value):
            return value[accessor]
        if isinstance(accessor, str) and isinstance(value, Mapping) and accessor in value:
            return value[accessor]
        raise _Unresolved(f"${{{expression}}}: {accessor!r} is not in {_show(value)}", where)

    def _function(self, name: str, argument: object, where: str) -> object:
        """A function's result; computed from a secret, it is secret (and its arguments are not shown)."""
        inner = f"{where}.{name}"
        evaluated = self.evaluate(argument, inner)
        if name == "fn::secret":  # Pulumi's way to mark a value secret: never quoted nor applied here either
            return evaluated if isinstance(evaluated, _Secret) else _Secret(evaluated)
        result = self._compute(name, _reveal(evaluated), where, _show(evaluated))
        return _Secret(result) if _is_secret(evaluated) else result

    def _compute(self, name: str, args: object, where: str, shown: str) -> object:
        if name not in ("fn::join", "fn::select", "fn::split"):
            if name == "fn::invoke":
                raise _Unresolved("fn::invoke calls a provider function, which only Pulumi can run", where)
            raise _Unresolved(
                f"{name} is not evaluated by this import (only fn::join, fn::select, fn::split, fn::secret)", where
            )
        if isinstance(args, list) and len(args) == 2:
            first, second = args
            if name == "fn::join" and isinstance(first, str) and isinstance(second, list):
                if all(isinstance(item, str) for item in second):
                    return first.join(second)
            elif name == "fn::select" and isinstance(first, int) and isinstance(second, list):
                if not isinstance(first, bool) and 0 <= first < len(second):
                    return second[first]
            elif name == "fn::split" and isinstance(first, str) and first and isinstance(second, str):
                return second.split(first)
        raise _Unresolved(f"{name} has arguments it cannot use: {shown}", where)

    def _output(self, resource: _Resource, name: str, where: str) -> object:
        if resource.kind == AUTO_DEPLOYER:
            if name == "ref":  # the component's ref output: project/stack (secret when either part is)
                parts = [self.input(resource, "project"), self.input(resource, "stack")]
                ref = "/".join(str(_reveal(part)) for part in parts)
                return _Secret(ref) if _is_secret(parts) else ref
            if name in _AUTO_DEPLOYER_INPUTS:
                return self.input(resource, name)
            if name == "downstreamWebhooks":
                raise _Unresolved(
                    f"{resource.name}.downstreamWebhooks are names Pulumi Cloud gives the webhooks it creates; "
                    "they are not known before that",
                    where,
                    after_creation=True,
                )
        elif resource.kind == WEBHOOK:
            if name in _WEBHOOK_INPUTS:
                return self.input(resource, name)
            if name == "name":
                raise _Unresolved(
                    f"{resource.name}.name is chosen by Pulumi Cloud when the webhook is created",
                    where,
                    after_creation=True,
                )
        else:
            raise _Unresolved(
                f"outputs of a {resource.kind} resource exist only once Pulumi has created it",
                where,
                after_creation=True,
            )
        raise _Unresolved(f"a {resource.kind} resource has no output {name!r} that is known in advance", where)

    def input(self, resource: _Resource, name: str) -> object:
        raw = resource.properties.get(name, _MISSING)
        path = f"resources.{resource.name}.properties.{name}"
        if raw is _MISSING:
            raise _Unresolved(f"{resource.name} does not set {name}", path)
        return self.named(path, raw)

    def optional(self, resource: _Resource, name: str) -> object:
        """An input, or None when it is not given or could not be resolved (then it is reported)."""
        if resource.properties.get(name) is None:
            return None
        try:
            return self.input(resource, name)
        except _Unresolved:
            return _MISSING


class _Importer:
    def __init__(self, program: _Program) -> None:
        self.program = program
        self.entries: dict[str, dict[str, Any]] = {}
        self.origins: dict[tuple[str, str], str] = {}
        self.foreign: dict[str, list[str]] = {}  # organization -> the resources that name it

    def problem(self, where: str, message: str, code: str = "unsupported", subject: str = "") -> None:
        self.program.problem(where, message, code, subject)

    def entry(self, ref: str) -> dict[str, Any]:
        if ref not in self.entries:
            project, _, stack = ref.partition("/")
            self.entries[ref] = {"project": project, "stack": stack, "downstreamRefs": []}
        return self.entries[ref]

    def add_edge(self, upstream: str, edge: str | dict[str, Any], where: str) -> None:
        downstream = edge if isinstance(edge, str) else str(edge["ref"])
        key = (upstream, downstream)
        if downstream == upstream:
            self.problem(where, f"{upstream} would trigger itself")
            return
        if key in self.origins:
            self.problem(
                where,
                f"the edge {upstream} -> {downstream} is already declared by {self.origins[key]}; "
                "stackcascade keeps one webhook per edge, so declare it once",
            )
            return
        self.origins[key] = where
        self.entry(upstream)["downstreamRefs"].append(edge)

    def public(self, value: object, where: str, what: str) -> bool:
        """Whether ``value`` may go into the declaration; one derived from a secret is reported, unquoted.

        Edges and their options are stored and shown in plain text, so a secret cannot set them.
        """
        if not _is_secret(value):
            return True
        self.problem(
            where,
            f"{what} is {NOT_SHOWN}: an Auto Deploy declaration is stored and shown in plain text, "
            "so it cannot use a value derived from a secret config value",
        )
        return False

    def string(self, resource: _Resource, name: str, *, required: bool = True) -> str | None:
        where = f"resources.{resource.name}.properties.{name}"
        value = self.program.optional(resource, name)
        if value is _MISSING:
            return None
        if value is None:
            if required:
                self.problem(where, f"{name} is required")
            return None
        if not self.public(value, where, name):
            return None
        if not isinstance(value, str):
            self.problem(where, f"{name} must be a string, got {_show(value)}")
            return None
        return value

    def organization(self, resource: _Resource, name: str) -> bool:
        value = self.string(resource, name)
        if value is None:
            return False
        if value == self.program.organization or value in self.program.aliases:
            return True
        self.foreign.setdefault(value, []).append(resource.name)
        return False

    def report_foreign(self) -> None:
        """One problem per other organization the program names, with the resources that name it."""
        for name, resources in self.foreign.items():
            self.problem(
                "resources " + ", ".join(resources),
                f"organization {name!r} is not {self.program.organization!r}, the organization this is applied to",
                "organization",
                name,
            )

    def stack_ref(self, resource: _Resource, project_key: str, stack_key: str) -> str | None:
        project = self.string(resource, project_key)
        stack = self.string(resource, stack_key)
        if project is None or stack is None:
            return None
        for kind, key, value in (("project", project_key, project), ("stack", stack_key, stack)):
            try:
                check_name(kind, value)
            except InvalidInput as exc:
                self.problem(f"resources.{resource.name}.properties.{key}", exc.message)
                return None
        return f"{project}/{stack}"

    def unknown_properties(self, resource: _Resource, known: Iterable[str]) -> None:
        allowed = set(known)
        for key in resource.properties:
            if key not in allowed:
                self.problem(
                    f"resources.{resource.name}.properties.{key}",
                    f"{resource.kind} has no input {key!r} that this import honours; known: {', '.join(sorted(allowed))}",
                )

    def auto_deployer(self, resource: _Resource) -> None:
        self.unknown_properties(resource, _AUTO_DEPLOYER_INPUTS)
        in_org = self.organization(resource, "organization")
        upstream = self.stack_ref(resource, "project", "stack")
        if not in_org or upstream is None:
            return
        self.entry(upstream)
        where = f"resources.{resource.name}.properties.downstreamRefs"
        raw = resource.properties.get("downstreamRefs")
        if raw is None:
            return
        items: list[object]
        if isinstance(raw, list):
            items = []
            for index, item in enumerate(raw):
                try:
                    items.append(self.program.named(f"{where}[{index}]", item))
                except _Unresolved:
                    continue
        else:
            try:
                value = self.program.named(where, raw)
            except _Unresolved:
                return
            if not self.public(value, where, "downstreamRefs"):
                return
            if not isinstance(value, list):
                self.problem(where, f"downstreamRefs must be a list of stack references, got {_show(value)}")
                return
            items = list(value)
        for index, item in enumerate(items):
            if not self.public(item, f"{where}[{index}]", "the stack reference"):
                continue
            problem = ref_problem(item)
            if problem is not None:
                self.problem(f"{where}[{index}]", problem)
                continue
            self.add_edge(upstream, str(item), f"{where}[{index}]")

    def webhook(self, resource: _Resource) -> None:
        self.unknown_properties(resource, _WEBHOOK_INPUTS)
        base = f"resources.{resource.name}.properties"
        webhook_format = self.string(resource, "format", required=False)
        if webhook_format != "pulumi_deployments":
            shown = "raw (the default)" if webhook_format is None else repr(webhook_format)
            self.problem(
                f"{base}.format",
                f"format {shown}: only deployment webhooks (format pulumi_deployments) are edges of an Auto Deploy "
                "declaration; create other webhooks with `cascade webhook create`",
            )
            return
        for name, reason in (
            ("environmentName", "environment webhooks are not supported"),
            ("secret", "a deployment webhook posts nothing, so a signing secret is not kept"),
        ):
            if resource.properties.get(name) is not None:
                self.problem(f"{base}.{name}", reason)
        in_org = self.organization(resource, "organizationName")
        if resource.properties.get("projectName") is None or resource.properties.get("stackName") is None:
            self.problem(base, "a deployment webhook belongs to a stack: set projectName and stackName")
            return
        upstream = self.stack_ref(resource, "projectName", "stackName")
        target = self.string(resource, "payloadUrl")
        active = self.program.optional(resource, "active")
        if not self.public(active, f"{base}.active", "active"):
            return
        if active is not None and active is not _MISSING and not isinstance(active, bool):
            self.problem(f"{base}.active", f"active must be true or false, got {_show(active)}")
            return
        if active is False:
            self.problem(
                f"{base}.active",
                "an inactive deployment webhook is no edge; remove the resource or set active: true",
            )
            return
        edge: dict[str, Any] = {}
        for name, check in (
            ("filters", lambda v: check_filters(v, stack_scoped=True)),
            ("groups", check_groups),
        ):
            value = self.program.optional(resource, name)
            if value is _MISSING or not self.public(value, f"{base}.{name}", name):
                return
            try:
                edge[name] = check(value)
            except InvalidInput as exc:
                self.problem(f"{base}.{name}", exc.message)
                return
        display_name = self.string(resource, "displayName", required=False)
        if not in_org or upstream is None or target is None or active is _MISSING:
            return
        problem = ref_problem(target)
        if problem is not None:
            self.problem(f"{base}.payloadUrl", f"a deployment webhook's payloadUrl is the stack to deploy: {problem}")
            return
        downstream = target
        options: dict[str, Any] = {}
        if tuple(sorted(set(edge["filters"]))) != DEFAULT_FILTERS:
            options["filters"] = edge["filters"]  # none given: every event, as in Pulumi
        if edge["groups"]:
            options["groups"] = edge["groups"]
        if display_name and display_name != downstream:
            options["displayName"] = display_name
        self.add_edge(upstream, {"ref": downstream, **options} if options else downstream, base)


def import_pulumi_program(
    program: object, *, organization: str, program_organizations: Collection[str] = ()
) -> ProgramImport:
    """Translate a Pulumi YAML program (already parsed) into our document.

    ``${pulumi.organization}`` is ``organization``; a resource that names another organization is a
    problem unless that organization is in ``program_organizations`` (declared as meaning
    ``organization``). Variables, config defaults, ``${resource.output}`` of outputs known in advance
    (an AutoDeployer's ``ref``, ``project``, ...) and fn::join/select/split are evaluated; everything
    else that bears on the graph is a problem, never silently dropped. Every variable, config value and
    program output is evaluated, used or not, as Pulumi would: one that cannot be is a problem too.
    Provider configuration and outputs that evaluate have no effect here; they come back as notes.
    A value derived from a secret config value (``secret: true``) is never quoted in a problem or note,
    and cannot name a stack or set an edge: the declaration is plain text.
    """
    if not isinstance(program, Mapping):
        return ProgramImport({"stacks": []}, (Problem("program", "a Pulumi YAML program is a map"),))
    state = _Program(program, organization, program_organizations)
    for key in program:
        if key not in _PROGRAM_KEYS:
            reason = (
                "the program lives in another directory, which is not read"
                if key == "main"
                else "this part of the program is not read by the import"
            )
            state.problem(str(key), reason)
        elif key in _PROGRAM_KEY_NOTES:
            state.notes.append(Note(str(key), _PROGRAM_KEY_NOTES[key]))
    runtime = program.get("runtime")
    runtime_name = runtime.get("name") if isinstance(runtime, Mapping) else runtime
    if runtime is not None and runtime_name != "yaml":
        state.problem("runtime", f"runtime {runtime_name!r}: only Pulumi YAML programs (runtime: yaml) can be read")
    importer = _Importer(state)
    counts = {AUTO_DEPLOYER: 0, WEBHOOK: 0}
    for resource in state.resources.values():
        if resource.kind == AUTO_DEPLOYER:
            counts[AUTO_DEPLOYER] += 1
            importer.auto_deployer(resource)
        elif resource.kind == WEBHOOK:
            counts[WEBHOOK] += 1
            importer.webhook(resource)
        else:
            state.problem(
                f"resources.{resource.name}",
                f"resource type {resource.kind!r} is not supported: only auto-deploy:AutoDeployer and "
                "pulumiservice:Webhook (format pulumi_deployments) are read; stackcascade creates nothing else",
            )
    state.evaluate_the_rest()
    importer.report_foreign()
    document = {"stacks": [importer.entries[ref] for ref in sorted(importer.entries)]}
    try:
        document = to_document(parse_document(document))
    except InvalidInput as exc:  # a safety net: the importer checks what the document checks
        state.problem("program", exc.message)
    return ProgramImport(document, tuple(state.problems), counts[AUTO_DEPLOYER], counts[WEBHOOK], tuple(state.notes))
