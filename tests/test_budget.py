"""The compiler core stays small enough to read in a sitting (tinygrad keeps such a budget):
compiler/ without layers/ holds at most 3,000 lines of code, not counting blank lines,
comments and docstrings."""
from __future__ import annotations

import ast
import io
import tokenize

from .conftest import ROOT

CORE_BUDGET = 3000


def code_lines(source: str) -> int:
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) \
                and node.body and isinstance(node.body[0], ast.Expr) \
                and isinstance(node.body[0].value, ast.Constant) \
                and isinstance(node.body[0].value.value, str):
            docstrings.update(range(node.body[0].lineno, node.body[0].end_lineno + 1))
    lines = set()
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
            tokenize.ENDMARKER}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in skip:
            lines.update(range(token.start[0], token.end[0] + 1))
    return len(lines - docstrings)


def test_compiler_core_line_budget():
    sizes = {path.name: code_lines(path.read_text()) for path in (ROOT / "compiler").glob("*.py")}
    total = sum(sizes.values())
    largest = ", ".join(f"{name} {lines}" for name, lines in
                        sorted(sizes.items(), key=lambda item: -item[1])[:5])
    assert total <= CORE_BUDGET, f"compiler core: {total} lines of code (largest: {largest})"


def test_the_counter_skips_comments_and_docstrings():
    source = '"""Module."""\n\n# a comment\ndef f():\n    """Doc\n    string."""\n    return 1\n'
    assert code_lines(source) == 2
