"""Write one benchmark's section of ``benchmarks/README.md`` between its own markers.

Each benchmark script owns a section ``<!-- name -->`` ... ``<!-- /name -->``; rerunning a script
replaces only its section, so the scripts can run separately and in any order.
"""

from __future__ import annotations

import platform
import re
from pathlib import Path

import torch

README = Path(__file__).with_name("README.md")
HEADER = [
    "# Benchmarks",
    "",
    "Written by `make bench` (the scripts in this folder); do not edit by hand. Each section",
    "names the script that wrote it.",
    "",
]


def machine() -> str:
    """One line describing where the numbers were measured."""
    return (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}"
    )


def write_section(name: str, lines: list[str], path: Path = README) -> None:
    """Replace (or append) the section ``name`` of ``path`` with ``lines``."""
    text = path.read_text() if path.exists() else "\n".join(HEADER) + "\n"
    body = "\n".join([f"<!-- {name} -->", *lines, f"<!-- /{name} -->"])
    pattern = re.compile(rf"<!-- {re.escape(name)} -->.*?<!-- /{re.escape(name)} -->", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: body, text)
    else:
        text = text.rstrip("\n") + "\n\n" + body + "\n"
    path.write_text(text)
    print(f"wrote section {name!r} of {path}")


def runs(values: list[float], fmt: str = "{:.3f}") -> str:
    """Every run's value, joined for a table cell."""
    return ", ".join(fmt.format(v) for v in values)
