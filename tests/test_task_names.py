"""Tasks are open: outside a task's own modules, no source file names a built-in task.

The engine, the Distiller, the data pipeline and collate, the metrics' plumbing, the tools and the
benchmarks loop over the configured tasks; a new task is new classes in the user's own module. This walks
the source of ``mtkd/``, ``tools/`` and ``benchmarks/`` and fails on a string constant equal to a task name
(``"seg"``), a metric or loss key of a task (``"seg/mIoU"``) or a keyword argument named after one
(``dict(seg=...)``). Docstrings and comments are prose, not code, and are not checked.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("seg", "det", "cls", "depth")
WALKED = ("mtkd", "tools", "benchmarks")

# Each built-in task's own modules: its head, target reader, metric and drawer.
OWN = {f"{folder}/{task}.py": task for task in TASKS
       for folder in ("mtkd/models/heads", "mtkd/data/targets", "mtkd/evaluation", "mtkd/visualization")}
ALLOWED = {
    "mtkd/data/imagefolder.py": "ImageFolder is a classification dataset by definition: it yields the cls key",
    "mtkd/data/synthetic.py": "the generator writes the ground truth of the built-in tasks (depth PNGs under depth/)",
}


def task_names_in(path: Path) -> list[tuple[int, str]]:
    """``(line, text)`` of every place a built-in task is named in code (not in docstrings)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if any(node.value == t or node.value.startswith(f"{t}/") for t in TASKS):
                found.append((node.lineno, repr(node.value)))
        elif isinstance(node, ast.keyword) and node.arg in TASKS:
            found.append((node.value.lineno, f"{node.arg}="))
    return found


def walked_files() -> list[Path]:
    return sorted(p for folder in WALKED for p in (ROOT / folder).rglob("*.py"))


def test_no_task_is_named_outside_its_own_modules():
    offences = []
    for path in walked_files():
        rel = path.relative_to(ROOT).as_posix()
        if rel in ALLOWED or rel in OWN:   # a task's own module may name anything (DetHead's "cls" term)
            continue
        offences += [f"{rel}:{line}: {text}" for line, text in task_names_in(path)]
    assert not offences, "built-in task names outside their own modules:\n" + "\n".join(offences)


def test_every_own_module_and_exception_exists():
    """The lists above name real files (a renamed module must not silently widen what is allowed)."""
    missing = [rel for rel in [*OWN, *ALLOWED] if not (ROOT / rel).is_file()]
    assert not missing, missing


def test_the_walk_finds_names_in_code_and_skips_docstrings(tmp_path):
    source = tmp_path / "example.py"
    source.write_text('"""About seg and "det"."""\n'
                      'def f(batch):\n    """Reads "cls"."""\n    return batch["seg"], dict(det=1), "cls/top1", "segment"\n')
    assert sorted(task_names_in(source)) == sorted([(4, "'seg'"), (4, "det="), (4, "'cls/top1'")])
