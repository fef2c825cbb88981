"""The one YAML reader of the builder: tfbuild.yaml and the packaged compat.yaml.

Versions such as `3.10` stay the text written (no floats), duplicate keys are
refused, and only plain data is built (a SafeLoader: no object tags). A syntax
error comes back as YamlSyntaxError with its line and column; callers turn it
into their own error (SpecError for a user's file, CompatError for compat.yaml).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import yaml


class YamlSyntaxError(ValueError):
    def __init__(self, problem: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.line = line
        self.column = column


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps versions as text and refuses duplicate keys."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if isinstance(key, Hashable) and key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first given on line {seen[key] + 1})",
                key_node.start_mark,
            )
        if isinstance(key, Hashable):
            seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def parse_yaml(text: str) -> Any:
    """YAML text -> plain data (None for an empty document). Pure."""
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no object tags
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise YamlSyntaxError(
            f"YAML syntax error: {e.problem or e.context or 'malformed YAML'}",
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from None
    except yaml.YAMLError as e:
        raise YamlSyntaxError(f"YAML error: {e}") from None
