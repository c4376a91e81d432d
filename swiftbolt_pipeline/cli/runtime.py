"""How a command reports a failure."""

from __future__ import annotations

import sys

import click


def fail(code: str, message: str) -> None:
    click.echo(f"error [{code}]: {message}", err=True)
    sys.exit(2)
