"""Reading a pipeline (or service) file: YAML to a validated spec, with errors that name
file:line:column."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from o11n.core.pipeline import Pipeline
from o11n.errors import SpecError

Path_ = tuple[str | int, ...]
Marks = dict[Path_, tuple[int, int]]
M = TypeVar("M", bound=BaseModel)


def read_spec(path: Path, what: str) -> str:
    """A spec file's text; SpecError naming the file when it cannot be read."""
    try:
        return path.read_text()
    except OSError as exc:
        raise SpecError(f"cannot read the {what}: {exc.strerror or exc}", str(path), 1, 1) from None


def load_file(path: Path) -> Pipeline:
    """The pipeline in a file."""
    return load(read_spec(path, "pipeline"), str(path))


def load(text: str, file: str = "<pipeline>") -> Pipeline:
    """A pipeline from YAML (or JSON) text; a SpecError names where anything is wrong."""
    return load_model(text, file, Pipeline, "pipeline")


def load_model(text: str, file: str, model: type[M], what: str) -> M:
    """A model from YAML (or JSON) text; a SpecError names the line and column of what is
    wrong (`what` names the kind of file in messages)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise SpecError(f"not valid YAML: {exc.problem or exc}", file, line, column) from None
    except yaml.YAMLError as exc:  # e.g. a character YAML does not allow
        raise SpecError(f"not valid YAML: {exc}", file, 1, 1) from None
    except RecursionError:
        raise SpecError("not valid YAML: nested too deeply", file, 1, 1) from None
    if node is None:
        raise SpecError(f"the {what} file is empty", file, 1, 1)
    marks: Marks = {}
    try:
        data = _plain(node, (), marks, file)
    except RecursionError:
        raise SpecError(f"the {what} is nested too deeply", file, 1, 1) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _spec_error(exc, marks, data, file) from None


def _plain(node: yaml.Node, path: Path_, marks: Marks, file: str) -> Any:
    """Python values of a YAML node, recording where each one stands."""
    marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _plain(key_node, (*path, "<key>"), {}, file)
            if key in out:
                line, column = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                raise SpecError(f"duplicate key {key!r}", file, line, column)
            marks[(*path, str(key), "<key>")] = (
                key_node.start_mark.line + 1,
                key_node.start_mark.column + 1,
            )
            out[key] = _plain(value_node, (*path, str(key)), marks, file)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_plain(item, (*path, i), marks, file) for i, item in enumerate(node.value)]
    return yaml.SafeLoader("").construct_object(node)


def _spec_error(exc: ValidationError, marks: Marks, data: Any, file: str) -> SpecError:
    error = exc.errors()[0]
    loc = tuple(error.get("loc", ()))
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    where = ".".join(str(p) for p in loc) or "pipeline"
    if error.get("type") == "extra_forbidden":
        message = f"unknown key {loc[-1]!r}"
        position = marks.get((*loc, "<key>")) or _nearest(loc, marks)
    else:
        position = _named(message, marks, data) or _nearest(loc, marks)
    return SpecError(f"{where}: {message}", file, *position)


def _nearest(loc: Path_, marks: Marks) -> tuple[int, int]:
    """The position of the deepest part of `loc` that the file has."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in marks:
            return marks[loc[:end]]
    return (1, 1)


def _named(message: str, marks: Marks, data: Any) -> tuple[int, int] | None:
    """For a 'two ... are named X' error, the position of the second X."""
    match = re.search(r"named '([^'\[]+)", message)
    if not match:
        return None
    hits = [path for path in marks if path and path[-1] == "name" and _at(data, path) == match[1]]
    return marks[sorted(hits, key=lambda p: marks[p])[-1]] if len(hits) > 1 else None


def _at(data: Any, path: Path_) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data
