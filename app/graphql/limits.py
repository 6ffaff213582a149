"""How much one GraphQL document may ask for, checked before it is validated or run.

* at most `MAX_TOKENS` tokens (the parser stops reading past them);
* fields nested at most `MAX_DEPTH` deep, and at most `MAX_ALIASES` aliases;
* at most `MAX_NODES` nodes: each connection field costs the page size it asks for
  (`first` or `last`, else the default page), times the pages of the connections it sits
  in, summed over the document. `first: 100` inside `first: 100` is 10,100 nodes and
  fine; `first: 1000` inside `first: 1000` is a million, and refused.

Every refusal is one error with ``extensions.code`` QUERY_TOO_COMPLEX.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLNamedType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_named_type,
    value_from_ast_untyped,
)
from strawberry.extensions import SchemaExtension

from app.graphql.connections import DEFAULT_PAGE_SIZE

MAX_TOKENS = 2000
MAX_DEPTH = 12
MAX_ALIASES = 30
MAX_NODES = 50_000
TOO_COMPLEX = "QUERY_TOO_COMPLEX"


class QueryTooComplex(Exception):
    pass


class _Walk:
    """One pass over the operation, fragments expanded, counting depth, aliases, nodes."""

    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: Mapping[str, Any],
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables
        self.aliases = 0
        self.nodes = 0

    def selections(
        self,
        selection_set: SelectionSetNode,
        parent: GraphQLNamedType | None,
        depth: int,
        pages: int,
        seen: frozenset[str],
    ) -> None:
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                self.field(selection, parent, depth, pages, seen)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                named = self.schema.get_type(condition.name.value) if condition else parent
                self.selections(selection.selection_set, named, depth, pages, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is None or name in seen:
                    continue  # validation reports unknown and cyclic fragments
                named = self.schema.get_type(fragment.type_condition.name.value)
                self.selections(fragment.selection_set, named, depth, pages, seen | {name})

    def field(
        self,
        node: FieldNode,
        parent: GraphQLNamedType | None,
        depth: int,
        pages: int,
        seen: frozenset[str],
    ) -> None:
        if node.alias is not None:
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise QueryTooComplex(f"The document uses more than {MAX_ALIASES} aliases")
        if depth > MAX_DEPTH:
            raise QueryTooComplex(f"Fields are nested more than {MAX_DEPTH} deep")
        fields = getattr(parent, "fields", None) or {}
        definition = fields.get(node.name.value)
        if definition is None:
            return  # __typename, or a field validation will report
        if "first" in definition.args:
            pages *= self.page_size(node)
            self.nodes += pages
            if self.nodes > MAX_NODES:
                raise QueryTooComplex(
                    f"The document asks for more than {MAX_NODES:,} nodes across its "
                    "connections; ask for smaller pages, or fewer nested connections"
                )
        if node.selection_set is not None:
            named = get_named_type(definition.type)
            self.selections(node.selection_set, named, depth + 1, pages, seen)

    def page_size(self, node: FieldNode) -> int:
        asked = [
            value_from_ast_untyped(argument.value, dict(self.variables))
            for argument in node.arguments or ()
            if argument.name.value in ("first", "last")
        ]
        sizes = [value for value in asked if isinstance(value, int) and value >= 0]
        return max(sizes) if sizes else DEFAULT_PAGE_SIZE


class QueryLimits(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        self.execution_context.parse_options["max_tokens"] = MAX_TOKENS
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None and not context.pre_execution_errors:
            fragments = {
                definition.name.value: definition
                for definition in document.definitions
                if isinstance(definition, FragmentDefinitionNode)
            }
            walk = _Walk(context.schema._schema, fragments, context.variables or {})
            try:
                for definition in document.definitions:
                    if isinstance(definition, OperationDefinitionNode):
                        root = context.schema._schema.get_root_type(definition.operation)
                        walk.selections(definition.selection_set, root, 1, 1, frozenset())
            except QueryTooComplex as refusal:
                context.pre_execution_errors = [
                    GraphQLError(str(refusal), extensions={"code": TOO_COMPLEX})
                ]
        yield
