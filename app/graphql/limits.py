"""How much one GraphQL document may ask for, checked before it is validated or run.

* at most `MAX_TOKENS` tokens (the parser stops reading past them);
* fields nested at most `MAX_DEPTH` deep, and at most `MAX_ALIASES` aliases;
* at most `MAX_FIELDS` field selections;
* at most `MAX_NODES` nodes: each connection field costs the page size it asks for
  (`first` or `last`, else the default page), times the pages of the connections it sits
  in, summed over the document. `first: 100` inside `first: 100` is 10,100 nodes and
  fine; `first: 1000` inside `first: 1000` is a million, and refused.

Everything is counted on the document with its fragments expanded: a fragment spread
twice counts twice, so fragments that each spread the next one twice cost what their
2^n expansion would. Each fragment is costed once, though, and its cost reused at every
spread, so the check takes time linear in the document's size whatever it expands to.
That works because a fragment's cost does not depend on where it is spread: its type
condition fixes the fields it selects, its depth adds to the depth of the spread, and its
nodes scale with the pages around the spread (a connection costs its page size times
those pages, so every node count is linear in them: `pages * cost at one page`).

Every refusal is one error with ``extensions.code`` QUERY_TOO_COMPLEX. Before the cost,
a string written into the document that no column can hold (a NUL character, a lone
surrogate) is refused as VALIDATION_ERROR, as the request's JSON is for variables.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLNamedType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    Visitor,
    get_named_type,
    value_from_ast_untyped,
    visit,
)
from graphql.language.visitor import BREAK
from strawberry.extensions import SchemaExtension

from app import http_bodies
from app.graphql.connections import DEFAULT_PAGE_SIZE

MAX_TOKENS = 2000
MAX_DEPTH = 12
MAX_ALIASES = 30
MAX_FIELDS = 10_000
MAX_NODES = 50_000
TOO_COMPLEX = "QUERY_TOO_COMPLEX"


def _capped(count: int, limit: int) -> int:
    # One past the limit already decides the answer; capping keeps a 2^n fan-out's
    # counts small numbers instead of huge integers.
    return min(count, limit + 1)


@dataclass(frozen=True)
class Cost:
    """What a selection set asks for: the levels of fields it nests, its aliases and
    field selections, and the connection nodes it reads within one page of its parent
    (within `pages` pages it reads `pages * nodes`)."""

    depth: int = 0
    aliases: int = 0
    fields: int = 0
    nodes: int = 0

    def beside(self, other: Cost) -> Cost:
        """The cost of two selections side by side in one selection set."""
        return Cost(
            depth=max(self.depth, other.depth),
            aliases=_capped(self.aliases + other.aliases, MAX_ALIASES),
            fields=_capped(self.fields + other.fields, MAX_FIELDS),
            nodes=_capped(self.nodes + other.nodes, MAX_NODES),
        )

    def refusal(self) -> str | None:
        """Why a document of this cost is refused, if it is."""
        if self.depth > MAX_DEPTH:
            return f"Fields are nested more than {MAX_DEPTH} deep"
        if self.aliases > MAX_ALIASES:
            return f"The document uses more than {MAX_ALIASES} aliases"
        if self.nodes > MAX_NODES:
            return (
                f"The document asks for more than {MAX_NODES:,} nodes across its "
                "connections; ask for smaller pages, or fewer nested connections"
            )
        if self.fields > MAX_FIELDS:
            return (
                f"The document selects more than {MAX_FIELDS:,} fields once its fragments "
                "are expanded; spread fewer fragments"
            )
        return None


FREE = Cost()


class Costing:
    """The cost of a document's selection sets, each fragment costed once."""

    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: Mapping[str, Any],
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = dict(variables)
        self.costed: dict[str, Cost] = {}
        self.costing: set[str] = set()

    def selections(self, selection_set: SelectionSetNode, parent: GraphQLNamedType | None) -> Cost:
        total = FREE
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total = total.beside(self.field(selection, parent))
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                named = self.schema.get_type(condition.name.value) if condition else parent
                total = total.beside(self.selections(selection.selection_set, named))
            elif isinstance(selection, FragmentSpreadNode):
                total = total.beside(self.fragment(selection.name.value))
        return total

    def fragment(self, name: str) -> Cost:
        known = self.costed.get(name)
        if known is not None:
            return known
        fragment = self.fragments.get(name)
        if fragment is None or name in self.costing:
            # Validation refuses unknown and cyclic fragments; until then they cost nothing.
            return FREE
        self.costing.add(name)
        named = self.schema.get_type(fragment.type_condition.name.value)
        cost = self.selections(fragment.selection_set, named)
        self.costing.discard(name)
        self.costed[name] = cost
        return cost

    def field(self, node: FieldNode, parent: GraphQLNamedType | None) -> Cost:
        own = Cost(depth=1, aliases=0 if node.alias is None else 1, fields=1)
        fields = getattr(parent, "fields", None) or {}
        definition = fields.get(node.name.value)
        if definition is None:
            return own  # __typename, or a field validation will report
        inner = FREE
        if node.selection_set is not None:
            inner = self.selections(node.selection_set, get_named_type(definition.type))
        nodes = inner.nodes
        if "first" in definition.args:
            # The page itself, and what each of its nodes asks for.
            nodes = self.page_size(node) * (1 + inner.nodes)
        return Cost(
            depth=1 + inner.depth,
            aliases=_capped(own.aliases + inner.aliases, MAX_ALIASES),
            fields=_capped(own.fields + inner.fields, MAX_FIELDS),
            nodes=_capped(nodes, MAX_NODES),
        )

    def page_size(self, node: FieldNode) -> int:
        asked = [
            value_from_ast_untyped(argument.value, self.variables)
            for argument in node.arguments or ()
            if argument.name.value in ("first", "last")
        ]
        sizes = [value for value in asked if isinstance(value, int) and value >= 0]
        return _capped(max(sizes), MAX_NODES) if sizes else DEFAULT_PAGE_SIZE


def document_cost(
    schema: GraphQLSchema, document: DocumentNode, variables: Mapping[str, Any]
) -> Cost:
    """The cost of every operation of a parsed document, together."""
    fragments = {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    costing = Costing(schema, fragments, variables)
    total = FREE
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            root = schema.get_root_type(definition.operation)
            total = total.beside(costing.selections(definition.selection_set, root))
    return total


class QueryLimits(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        self.execution_context.parse_options["max_tokens"] = MAX_TOKENS
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None and not context.pre_execution_errors:
            unstorable = _unstorable_literal(document)
            if unstorable is not None:
                context.pre_execution_errors = [
                    GraphQLError(unstorable, extensions={"code": "VALIDATION_ERROR"})
                ]
                yield
                return
            cost = document_cost(context.schema._schema, document, context.variables or {})
            refusal = cost.refusal()
            if refusal is not None:
                context.pre_execution_errors = [
                    GraphQLError(refusal, extensions={"code": TOO_COMPLEX})
                ]
        yield


def _unstorable_literal(document: DocumentNode) -> str | None:
    """A string written into the document that no column can hold (variables are checked
    with the request's JSON), said in one sentence; None when there is none."""

    class Strings(Visitor):
        problem: str | None = None

        def enter_string_value(self, node: StringValueNode, *_: object) -> object:
            self.problem = self.problem or http_bodies.unstorable_text(node.value)
            return BREAK if self.problem else None

    strings = Strings()
    visit(document, strings)
    if strings.problem is None:
        return None
    return f"A string in the document contains {strings.problem}, which no value may hold"
