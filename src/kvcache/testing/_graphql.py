"""The emulator's slice of the Admin GraphQL schema, its resolvers and Shopify's cost rules.

Queries `customer(id:)`, `customers(first:, query:)`, `customerByIdentifier(identifier:)`
(from 2025-01) and `shop`; mutations `customerCreate`, `customerUpdate`, `customerDelete`.
`Customer.defaultEmailAddress` exists from 2025-04, as on Shopify, so a query written
for a newer version fails on an older one with Shopify's "Field ... doesn't exist"
error (code `undefinedField`). The documents are parsed, validated and executed by
graphql-core, so any query a user's app sends over these fields works.

Cost (shopify.dev "GraphQL Admin API rate limits"): scalars and enums 0, objects 1,
a connection 2 plus its page size times the cost of one node, a mutation 10. The
actual cost counts the nodes a connection really returned.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    build_schema,
    get_named_type,
    is_leaf_type,
    value_from_ast_untyped,
)

from ._shop import EmulatedShop, UserErrors

__all__ = ["Cost", "api_schema", "query_cost", "shopify_errors", "version_features"]

MUTATION_COST = 10

_SDL = """
schema { query: QueryRoot mutation: Mutation }
scalar DateTime
scalar UnsignedInt64
enum CustomerEmailAddressMarketingState { NOT_SUBSCRIBED PENDING SUBSCRIBED UNSUBSCRIBED }
type CustomerEmailAddress {
  emailAddress: String
  marketingState: CustomerEmailAddressMarketingState!
}
type Customer {
  id: ID!
  legacyResourceId: UnsignedInt64!
  email: String @deprecated(reason: "Use `defaultEmailAddress.emailAddress` instead.")
  firstName: String
  lastName: String
  displayName: String!
  phone: String
  tags: [String!]!
  note: String
  createdAt: DateTime!
  updatedAt: DateTime!
  %(default_email)s
}
type PageInfo {
  hasNextPage: Boolean!
  hasPreviousPage: Boolean!
  startCursor: String
  endCursor: String
}
type CustomerEdge { cursor: String! node: Customer! }
type CustomerConnection { edges: [CustomerEdge!]! nodes: [Customer!]! pageInfo: PageInfo! }
type Shop { id: ID! name: String! myshopifyDomain: String! }
input UniqueMetafieldValueInput { namespace: String key: String! value: String! }
input CustomerIdentifierInput {
  id: ID
  emailAddress: String
  phoneNumber: String
  customId: UniqueMetafieldValueInput
}
input CustomerInput {
  id: ID
  email: String
  firstName: String
  lastName: String
  phone: String
  note: String
  tags: [String!]
}
input CustomerDeleteInput { id: ID! }
type UserError { field: [String!] message: String! }
type CustomerCreatePayload { customer: Customer userErrors: [UserError!]! }
type CustomerUpdatePayload { customer: Customer userErrors: [UserError!]! }
type CustomerDeletePayload { deletedCustomerId: ID userErrors: [UserError!]! }
type QueryRoot {
  customer(id: ID!): Customer
  customers(first: Int, last: Int, after: String, before: String, query: String,
            reverse: Boolean = false): CustomerConnection!
  %(by_identifier)s
  shop: Shop!
}
type Mutation {
  customerCreate(input: CustomerInput!): CustomerCreatePayload
  customerUpdate(input: CustomerInput!): CustomerUpdatePayload
  customerDelete(input: CustomerDeleteInput!): CustomerDeletePayload
}
"""

_VERSION = re.compile(r"\d{4}-(0[1-9]|1[0-2])")
_UNDEFINED = re.compile(r"Cannot query field '(?P<field>\w+)' on type '(?P<type>\w+)'")


def version_features(version: str, legacy: bool) -> tuple[bool, bool] | None:
    """(has customerByIdentifier, has defaultEmailAddress) for an API version; None if invalid."""
    if version == "unstable":
        return not legacy, True
    if not _VERSION.fullmatch(version):
        return None
    return version >= "2025-01" and not legacy, version >= "2025-04"


@functools.cache
def api_schema(by_identifier: bool, default_email: bool) -> GraphQLSchema:
    schema = build_schema(
        _SDL
        % {
            "by_identifier": "customerByIdentifier(identifier: CustomerIdentifierInput!): Customer"
            if by_identifier
            else "",
            "default_email": "defaultEmailAddress: CustomerEmailAddress" if default_email else "",
        }
    )
    query, mutation = schema.query_type, schema.mutation_type
    assert query is not None and mutation is not None
    query.fields["customer"].resolve = _customer
    query.fields["customers"].resolve = _customers
    query.fields["shop"].resolve = _shop
    if by_identifier:
        query.fields["customerByIdentifier"].resolve = _by_identifier
    mutation.fields["customerCreate"].resolve = _create
    mutation.fields["customerUpdate"].resolve = _update
    mutation.fields["customerDelete"].resolve = _delete
    return schema


def _state(info: Any) -> EmulatedShop:
    shop: EmulatedShop = info.context["shop"]
    return shop


def _customer(_root: Any, info: Any, id: str) -> dict[str, Any] | None:
    record = _state(info).by_id(id)
    return None if record is None else record.node()


def _by_identifier(_root: Any, info: Any, identifier: Mapping[str, Any]) -> dict[str, Any] | None:
    shop = _state(info)
    given = [key for key, value in identifier.items() if value is not None]
    if len(given) != 1:
        raise GraphQLError("Exactly one identifier must be provided.")
    if "id" in identifier and identifier["id"] is not None:
        record = shop.by_id(identifier["id"])
    elif identifier.get("emailAddress") is not None:
        record = shop.by_email(identifier["emailAddress"])
    else:
        record = None  # phone numbers and custom ids are not emulated
    return None if record is None else record.node()


def _customers(_root: Any, info: Any, **args: Any) -> dict[str, Any]:
    count = args.get("first") if args.get("first") is not None else args.get("last")
    if count is None:
        raise GraphQLError("you must provide one of first or last")
    if not 0 <= count <= 250:
        raise GraphQLError("The requested page size is over the maximum of 250")
    found = _state(info).search(args.get("query"))
    if args.get("reverse") or args.get("first") is None:
        found.reverse()
    page = found[:count]
    nodes = [record.node() for record in page]
    edges = [
        {"cursor": f"c{record.id}", "node": node} for record, node in zip(page, nodes, strict=True)
    ]
    return {
        "edges": edges,
        "nodes": nodes,
        "pageInfo": {
            "hasNextPage": len(found) > count,
            "hasPreviousPage": False,
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
    }


def _shop(_root: Any, info: Any) -> dict[str, Any]:
    shop = _state(info)
    name = shop.domain.split(".", 1)[0].replace("-", " ").title()
    return {"id": "gid://shopify/Shop/1", "name": name, "myshopifyDomain": shop.domain}


def _create(_root: Any, info: Any, input: dict[str, Any]) -> dict[str, Any]:
    try:
        record = _state(info).create(input)
    except UserErrors as refused:
        return {"customer": None, "userErrors": refused.errors}
    return {"customer": record.node(), "userErrors": []}


def _update(_root: Any, info: Any, input: dict[str, Any]) -> dict[str, Any]:
    if input.get("id") is None:
        return {"customer": None, "userErrors": [{"field": ["id"], "message": "id is required"}]}
    try:
        record = _state(info).update(input["id"], input)
    except UserErrors as refused:
        return {"customer": None, "userErrors": refused.errors}
    return {"customer": record.node(), "userErrors": []}


def _delete(_root: Any, info: Any, input: dict[str, Any]) -> dict[str, Any]:
    if not _state(info).delete(input["id"]):
        errors = [{"field": ["id"], "message": "Customer can't be found"}]
        return {"deletedCustomerId": None, "userErrors": errors}
    return {"deletedCustomerId": input["id"], "userErrors": []}


def shopify_errors(errors: list[GraphQLError]) -> list[dict[str, Any]]:
    """graphql-core's errors in Shopify's words (an unknown field is `undefinedField`)."""
    shaped = []
    for error in errors:
        item: dict[str, Any] = dict(error.formatted)
        match = _UNDEFINED.match(error.message)
        if match:
            item["message"] = f"Field '{match['field']}' doesn't exist on type '{match['type']}'"
            item["extensions"] = {
                "code": "undefinedField",
                "typeName": match["type"],
                "fieldName": match["field"],
            }
        shaped.append(item)
    return shaped


@dataclass(frozen=True, slots=True)
class Cost:
    """The requested cost of an operation, and its connections: (response key, node cost)."""

    requested: int
    connections: tuple[tuple[str, int, int], ...]  # (key, page size, cost of one node)

    def actual(self, data: Mapping[str, Any] | None) -> int:
        """The cost of what came back: a connection's unreturned nodes are refunded."""
        if data is None:
            return 0
        spent = self.requested
        for key, size, node in self.connections:
            value = data.get(key)
            returned = len(value.get("edges") or value.get("nodes") or []) if value else 0
            spent -= (size - returned) * node
        return max(spent, 1 if self.requested else 0)


def query_cost(
    schema: GraphQLSchema, document: DocumentNode, variables: Mapping[str, Any] | None
) -> Cost:
    """The cost of the document's (first) operation, by Shopify's static rules."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    walker = _Walker(fragments, dict(variables or {}))
    if operation.operation.value == "mutation":
        return Cost(MUTATION_COST * len(walker.fields(operation.selection_set)), ())
    root = schema.query_type
    assert root is not None
    connections: list[tuple[str, int, int]] = []
    total = 0
    for node in walker.fields(operation.selection_set):
        cost, page, each = walker.field_cost(root, node)
        total += cost
        if page:
            connections.append(((node.alias or node.name).value, page, each))
    return Cost(total, tuple(connections))


class _Walker:
    def __init__(self, fragments: dict[str, FragmentDefinitionNode], variables: dict[str, Any]):
        self.fragments = fragments
        self.variables = variables

    def fields(self, selections: SelectionSetNode | None) -> list[FieldNode]:
        found: list[FieldNode] = []
        for node in selections.selections if selections else ():
            if isinstance(node, FieldNode):
                found.append(node)
            elif isinstance(node, InlineFragmentNode):
                found.extend(self.fields(node.selection_set))
            elif isinstance(node, FragmentSpreadNode) and node.name.value in self.fragments:
                found.extend(self.fields(self.fragments[node.name.value].selection_set))
        return found

    def selection_cost(self, parent: GraphQLObjectType, selections: SelectionSetNode | None) -> int:
        return sum(self.field_cost(parent, node)[0] for node in self.fields(selections))

    def field_cost(self, parent: GraphQLObjectType, node: FieldNode) -> tuple[int, int, int]:
        """(cost, page size if a connection else 0, cost of one node)."""
        definition = parent.fields.get(node.name.value)
        if definition is None:
            return 0, 0, 0
        named = get_named_type(definition.type)
        if is_leaf_type(named) or not isinstance(named, GraphQLObjectType):
            return 0, 0, 0
        if not named.name.endswith("Connection"):
            return 1 + self.selection_cost(named, node.selection_set), 0, 0
        page = self._page_size(node)
        each = 1
        for child in self.fields(node.selection_set):
            if child.name.value == "nodes":
                each = max(each, 1 + self._object_cost(named, child))
            elif child.name.value == "edges":
                for edge in self.fields(child.selection_set):
                    if edge.name.value == "node":
                        each = max(each, 1 + self._object_cost(named, edge, "edges"))
        return 2 + page * each, page, each

    def _object_cost(self, connection: GraphQLObjectType, node: FieldNode, via: str = "") -> int:
        holder = connection
        if via:
            holder_type = get_named_type(connection.fields[via].type)
            assert isinstance(holder_type, GraphQLObjectType)
            holder = holder_type
        target = get_named_type(holder.fields[node.name.value].type)
        assert isinstance(target, GraphQLObjectType)
        return self.selection_cost(target, node.selection_set)

    def _page_size(self, node: FieldNode) -> int:
        for argument in node.arguments or ():
            if argument.name.value in ("first", "last"):
                value = value_from_ast_untyped(argument.value, self.variables)
                if isinstance(value, int) and not isinstance(value, bool):
                    return max(0, value)
        return 0
