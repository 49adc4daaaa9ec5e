#!/usr/bin/env python3
"""Check that every role's meta/argument_specs.yml documents exactly the
variables of its defaults/main.yml, with the same default values.

Usage: check_argument_specs.py [ROLES_DIR]   (default: roles/ beside this repo's hack/)
Exit status 1 with one line per mismatch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml


def check_role(role: Path) -> list[str]:
    problems: list[str] = []
    defaults_file = role / "defaults" / "main.yml"
    specs_file = role / "meta" / "argument_specs.yml"
    defaults = yaml.safe_load(defaults_file.read_text()) if defaults_file.exists() else {}
    defaults = defaults or {}
    if not specs_file.exists():
        return [f"{role.name}: meta/argument_specs.yml is missing"]
    specs = (yaml.safe_load(specs_file.read_text()) or {}).get("argument_specs", {})
    options = (specs.get("main") or {}).get("options") or {}
    for name in sorted(set(defaults) - set(options)):
        problems.append(f"{role.name}: {name} is in defaults/main.yml but not documented in meta/argument_specs.yml")
    for name in sorted(set(options) - set(defaults)):
        if "default" in options[name]:
            problems.append(f"{role.name}: {name} has a default in meta/argument_specs.yml but none in defaults/main.yml")
    for name in sorted(set(options) & set(defaults)):
        spec = options[name]
        if "default" in spec and spec["default"] != defaults[name]:
            problems.append(
                f"{role.name}: {name} defaults to {defaults[name]!r} in defaults/main.yml "
                f"but to {spec['default']!r} in meta/argument_specs.yml"
            )
        if not spec.get("description"):
            problems.append(f"{role.name}: {name} has no description in meta/argument_specs.yml")
    return problems


def main(argv: list[str]) -> int:
    roles_dir = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent / "roles"
    problems = [p for role in sorted(roles_dir.iterdir()) if role.is_dir() for p in check_role(role)]
    for problem in problems:
        print(problem)
    checked = sum(1 for r in roles_dir.iterdir() if r.is_dir())
    print(f"argument specs: {checked} role(s) checked, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
