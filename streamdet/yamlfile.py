"""YAML for config files: PyYAML's safe loader, made strict where a config needs it.

``yaml.safe_load`` takes the last of two equal keys without a word (a camera's second
``source:`` silently replaces its first), and it expands aliases without limit: 343 bytes of
nested aliases (a "billion laughs") took 91 s and 1.18 GB before validation refused them
(issue 13). Here a duplicate key is an error naming both lines, and a document whose aliases
would expand past ``MAX_VALUES`` values, that nests deeper than ``MAX_DEPTH`` or whose alias
contains itself is refused once it is composed, before anything is built from it. Errors are
``yaml.YAMLError`` with a mark, as PyYAML's own.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_VALUES = 100_000  # a large config has a few thousand; aliases may repeat parts up to this
MAX_DEPTH = 64  # a config nests about 6 deep; this also keeps the checks' recursion shallow
_MERGE = "tag:yaml.org,2002:merge"  # `<<: *defaults` may be overridden by the mapping's keys


class ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys and alias bombs."""

    def compose_mapping_node(self, anchor: Any) -> MappingNode:
        node = super().compose_mapping_node(anchor)
        seen: dict[tuple[str, str], ScalarNode] = {}
        for key, _ in node.value:
            if not isinstance(key, ScalarNode) or key.tag == _MERGE:
                continue
            first = seen.get((key.tag, key.value))
            if first is not None:
                raise ComposerError(
                    "while composing a mapping",
                    node.start_mark,
                    f"duplicate key {key.value!r} (first at line {first.start_mark.line + 1})",
                    key.start_mark,
                )
            seen[(key.tag, key.value)] = key
        return node

    def compose_document(self) -> Node | None:
        node = super().compose_document()
        if node is not None:
            expanded_size(node, {}, set(), 0)
        return node


def expanded_size(node: Node, sizes: dict[int, int], path: set[int], depth: int) -> int:
    """How many values ``node`` stands for once every alias in it is expanded.

    Aliases share one composed node, so ``sizes`` (by node id) makes this linear in the
    document's size however far the aliases would expand. Raises ``ComposerError``.
    """
    known = sizes.get(id(node))
    if known is not None:
        return known
    if id(node) in path:
        raise ComposerError(None, None, "an alias refers to a node it is part of", node.start_mark)
    if depth > MAX_DEPTH:
        raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", node.start_mark)
    children: list[Node] = []
    if isinstance(node, SequenceNode):
        children = list(node.value)
    elif isinstance(node, MappingNode):
        children = [part for pair in node.value for part in pair]
    path.add(id(node))
    total = 1 + sum(expanded_size(child, sizes, path, depth + 1) for child in children)
    path.discard(id(node))
    if total > MAX_VALUES:
        problem = f"its aliases expand to more than {MAX_VALUES} values"
        raise ComposerError(None, None, problem, node.start_mark)
    sizes[id(node)] = total
    return total


def load_yaml(text: str) -> Any:
    """The one document in ``text``, built like ``yaml.safe_load``. Raises ``yaml.YAMLError``."""
    loader = ConfigLoader(text)
    try:
        return loader.get_single_data()
    except RecursionError:  # PyYAML composes recursively: thousands of levels of brackets
        raise yaml.YAMLError(f"nested deeper than {MAX_DEPTH} levels") from None
    finally:
        loader.dispose()
