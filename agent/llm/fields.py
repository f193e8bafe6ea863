"""The pieces of a classifier's answer: JSON-schema builders for its output schema, and
readers that check each field of the parsed answer (``agent.llm.classifiers`` and
``agent.llm.listing_classifiers`` build on them)."""

import re
from typing import Any

LISTING_ID = r"[0-9]{6}"


class ClassifierOutputError(ValueError):
    """The LLM's answer was not the JSON object the classifier's schema asks for."""


def nullable(pattern: str) -> dict:
    """A string matching ``pattern``, or null."""
    return {"anyOf": [{"type": "string", "pattern": pattern}, {"type": "null"}]}


def schema_object(**properties: dict) -> dict:
    """A strict JSON-schema object: every property required, no others."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


BOOLEAN = {"type": "boolean"}


def read_field(data: dict, name: str, kind: type, pattern: str | None = None) -> Any:
    """Read one field of an LLM answer, checking its type and, for strings, its pattern."""
    if name not in data:
        raise ClassifierOutputError(f"missing field {name!r}")
    value = data[name]
    if value is None and pattern is not None:
        return None
    if not isinstance(value, kind):
        raise ClassifierOutputError(f"{name!r} should be {kind.__name__}, got {value!r}")
    if pattern is not None and not re.fullmatch(pattern, value):
        raise ClassifierOutputError(f"{name!r} does not match {pattern}: {value!r}")
    return value
