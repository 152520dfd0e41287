"""The shape of the package: small modules and functions, imports at module top unless a comment
says why, and a command line that starts without the heavy libraries."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "wardrobe"


def _modules():
    return sorted(SRC.rglob("*.py"))


def test_no_module_over_400_lines_and_no_function_over_80():
    big = [f"{p.relative_to(SRC)}: {n} lines" for p in _modules() if (n := len(p.read_text().splitlines())) > 400]
    long = []
    for p in _modules():
        for f in ast.walk(ast.parse(p.read_text())):
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and f.end_lineno - f.lineno + 1 > 80:
                long.append(f"{p.relative_to(SRC)}:{f.lineno} {f.name}: {f.end_lineno - f.lineno + 1} lines")
    assert big == [] and long == []


def test_imports_inside_functions_say_why():
    """An import inside a function is a heavy or optional dependency, and its line says which."""
    bare = []
    for p in _modules():
        lines = p.read_text().splitlines()
        for fn in ast.walk(ast.parse(p.read_text())):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    text = " ".join(lines[node.lineno - 1:node.end_lineno])
                    if "heavy" not in text and "optional" not in text:
                        bare.append(f"{p.relative_to(SRC)}:{node.lineno}")
    assert bare == []


def test_the_command_line_starts_without_torch():
    code = "import sys, wardrobe.cli; print(sorted(m for m in ('torch', 'lightning', 'timm') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr[-2000:]


def test_help_lists_the_commands_in_workflow_order():
    out = subprocess.run([sys.executable, "-m", "wardrobe.cli", "--help"], capture_output=True, text=True, timeout=60)
    names = [line.split()[1] for line in out.stdout.splitlines() if line.startswith("│ ") and line[2].isalpha()]
    assert names[:3] == ["train", "cv", "compare"], names
