"""Load a workflow (YAML or JSON): read the source (`source`), then compile and check it
(`compiler`). Nothing runs until the whole file is valid; a file that is not raises LoadError
listing every problem.
"""
from __future__ import annotations

from pathlib import Path

from localcloud.workflows import limits
from localcloud.workflows.compiler import compile_program
from localcloud.workflows.errors import LoadError
from localcloud.workflows.source import parse_document
from localcloud.workflows.steps import Program


def load_file(path: str | Path) -> Program:
    """Load and check a workflow file; raises LoadError listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LoadError([f"{path}: cannot read the workflow file: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise LoadError([f"{path}: the workflow file is not UTF-8 text: {exc}"]) from exc
    return load_source(text, path.name)


def load_source(text: str, filename: str = "workflow.yaml") -> Program:
    """Load and check workflow source text (YAML or JSON)."""
    if len(text.encode("utf-8")) > limits.SOURCE_BYTES:
        raise LoadError([f"{filename}: the source is {len(text.encode('utf-8'))} bytes; "
                         f"Cloud Workflows accepts at most {limits.SOURCE_BYTES}"])
    tree, meta = parse_document(text, filename)
    return compile_program(tree, meta, filename, text)
