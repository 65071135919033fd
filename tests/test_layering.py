"""The package's import rules (DESIGN.md "Import rules"), checked on the source of every module.

models/ never imports distill/ or engine/; data/, evaluation/ and visualization/ import nothing from
models/, distill/ or engine/; registry.py and the config package import nothing from mtkd (but
themselves); mtkd never imports tools/ or benchmarks/. Helpers several layers need (dist.py, checkpoint.py, structures.py) sit below them.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mtkd"

# (folder or module of the importer, imported packages it must not reach)
RULES = [
    ("models", ("mtkd.distill", "mtkd.engine")),
    ("data", ("mtkd.models", "mtkd.distill", "mtkd.engine")),
    ("evaluation", ("mtkd.models", "mtkd.distill", "mtkd.engine")),
    ("visualization", ("mtkd.models", "mtkd.distill", "mtkd.engine")),
    ("registry.py", ("mtkd",)),
    ("config", ("mtkd",)),  # the config package imports only itself (see ALLOWED_WITHIN)
    ("dist.py", ("mtkd.models", "mtkd.distill", "mtkd.engine", "mtkd.data", "mtkd.evaluation")),
    ("checkpoint.py", ("mtkd.models", "mtkd.distill", "mtkd.engine", "mtkd.data", "mtkd.evaluation")),
    ("deploy", ("mtkd.distill", "mtkd.engine")),  # an exported model runs without the training code
    ("", ("tools", "benchmarks")),  # the whole package
]


def imported_modules(path: Path, package: Path = PACKAGE) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of every import in a file, relative imports resolved against the package."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package_parts = path.relative_to(package.parent).with_suffix("").parts[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package_parts[: len(package_parts) - node.level + 1], *filter(None, [base])])
            found += [(node.lineno, f"{base}.{alias.name}" if base else alias.name) for alias in node.names]
    return found


def files_under(where: str) -> list[Path]:
    target = PACKAGE / where
    return [target] if target.is_file() else sorted(target.rglob("*.py"))


ALLOWED_WITHIN = {"config": "mtkd.config"}  # a package may import its own modules


def reaches(name: str, forbidden: str) -> bool:
    return name == forbidden or name.startswith(forbidden + ".")


@pytest.mark.parametrize("where, forbidden", RULES, ids=[w or "mtkd" for w, _ in RULES])
def test_import_rules(where, forbidden):
    files = files_under(where)
    assert files, f"no source under mtkd/{where}"
    own = ALLOWED_WITHIN.get(where)
    broken = [f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"
              for path in files for line, name in imported_modules(path)
              if any(reaches(name, bad) for bad in forbidden) and not (own and reaches(name, own))]
    assert not broken, "import rules broken:\n" + "\n".join(broken)


def test_the_checker_sees_a_forbidden_import(tmp_path):
    """The walk above resolves absolute and relative imports (else the rules could pass vacuously)."""
    fake = tmp_path / "mtkd"
    (fake / "data").mkdir(parents=True)
    source = fake / "data" / "bad.py"
    source.write_text("from ..engine import trainer\nimport mtkd.models.heads\nfrom mtkd import registry\n")
    names = [name for _, name in imported_modules(source, fake)]
    assert names == ["mtkd.engine.trainer", "mtkd.models.heads", "mtkd.registry"]
    assert any(reaches(n, "mtkd.engine") for n in names) and not reaches("mtkd.enginex", "mtkd.engine")
