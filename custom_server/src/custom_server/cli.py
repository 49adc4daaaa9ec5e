"""``python -m custom_server``: flags override environment variables of the same name.

Every setting has a flag: ``MODEL_PATH`` is ``--model-path``, ``MAX_BATCH_SIZE`` is
``--max-batch-size`` and so on. Flags are exported to the environment so that worker processes
(``--workers N``) see the same settings.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from custom_server import __version__
from custom_server.settings import Settings, env_name


def build_parser() -> argparse.ArgumentParser:
    """The flags, one per setting, documented with the setting's description."""
    parser = argparse.ArgumentParser(
        prog="python -m custom_server",
        description="Serve one model over REST (/predict and the Open Inference Protocol v2). "
        "Every flag can also be set as the environment variable shown.",
    )
    parser.add_argument("--version", action="version", version=f"custom_server {__version__}")
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        help_text = (field.description or "").replace("%", "%%")
        parser.add_argument(
            flag, dest=name, metavar=env_name(name), default=None, help=f"{help_text} [env {env_name(name)}]"
        )
    return parser


def parse_settings(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Settings from flags over the environment; the flags given are exported to ``environ``."""
    env = os.environ if environ is None else environ
    namespace = build_parser().parse_args(argv)
    given = {name: value for name, value in vars(namespace).items() if value is not None}
    for name, value in given.items():
        env[env_name(name)] = value
    if environ is None:
        return Settings()
    values: dict[str, Any] = {name: env[env_name(name)] for name in Settings.model_fields if env_name(name) in env}
    return Settings(**values)


def format_validation_error(exc: ValidationError) -> str:
    """One line per bad setting, named by its environment variable."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = error.get("loc", ())
        name = env_name(str(loc[0])) if loc else "settings"
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        lines.append(f"  {name}: {message}")
    return "invalid settings:\n" + "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, validate and serve; returns the exit status."""
    try:
        settings = parse_settings(argv)
    except ValidationError as exc:
        print(format_validation_error(exc), file=sys.stderr)
        return 2
    from custom_server.server import ModelServer

    return ModelServer(settings).run()
