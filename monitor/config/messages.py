"""How config problems are written: values shown short, many problems named once."""

from __future__ import annotations

__all__ = ["joined", "one_line", "shown"]


def shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def joined(problems: list[str], shown: int = 20) -> str:
    # A generated config can hold thousands of the same mistake: name the first ones.
    text = "; ".join(problems[:shown])
    return text + f"; and {len(problems) - shown} more" if len(problems) > shown else text


def one_line(message: str) -> str:
    return " ".join(message.split()) if "\n" in message or "\r" in message else message
