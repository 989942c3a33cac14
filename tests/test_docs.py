"""The docs keep up: every CLI command and every setting is documented."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from runyard.cli.main import app
from runyard.config import ENV_VARIABLES, YardFile

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _commands(group: Any, prefix: str) -> list[str]:
    out = []
    for name, command in sorted(group.commands.items()):
        if hasattr(command, "commands"):  # a group
            out += _commands(command, f"{prefix} {name}")
        else:
            out.append(f"{prefix} {name}")
    return out


def test_every_cli_command_is_in_docs_cli_md():
    root = typer.main.get_command(app)
    commands = _commands(root, "runyard")
    assert "runyard run start" in commands and "runyard init" in commands
    text = (DOCS / "cli.md").read_text()
    missing = [c for c in commands if f"## {c}\n" not in text]
    assert missing == [], f"add a '## <command>' section to docs/cli.md for: {missing}"


def test_every_setting_is_in_docs_configuration_md():
    text = (DOCS / "configuration.md").read_text()
    keys = []
    for name, field in YardFile.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            keys += [f"{name}.{sub}" for sub in annotation.model_fields]
        else:
            keys.append(name)
    keys += list(ENV_VARIABLES)
    missing = [k for k in keys if f"### `{k}`" not in text]
    assert missing == [], f"document these in docs/configuration.md: {missing}"


def test_every_exit_code_is_documented():
    from runyard import errors

    text = (DOCS / "exit-codes.md").read_text()
    from runyard.registry.idempotency import KeyReused
    from runyard.remote.client import ServerUnreachable
    from runyard.store import errors as store_errors
    from runyard.uploads import TooLarge

    classes = [
        c
        for c in vars(errors).values()
        if isinstance(c, type) and issubclass(c, errors.RunyardError)
    ]
    from runyard.lifecycle.runtar import TarMismatch, UnsafeMember

    classes += [ServerUnreachable, TooLarge, KeyReused]  # raised only by the server or client
    classes += [TarMismatch, UnsafeMember]
    classes += [
        c
        for c in vars(store_errors).values()
        if isinstance(c, type)
        and issubclass(c, store_errors.StoreError)
        and c is not store_errors.StoreError  # a mixin with no code of its own
    ]
    for cls in classes:
        assert f"`{cls.code}`" in text, f"docs/exit-codes.md lacks the error code {cls.code}"
        assert str(cls.exit_code) in text
