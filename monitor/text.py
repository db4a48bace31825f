"""Text from the outside (registries, token endpoints) made safe to show and store.

One function, used wherever such text enters a message: a registry's error
``code``/``message`` or challenge may carry newlines and terminal escapes (a
forged second ``present …`` line) and be kilobytes long.
"""

from __future__ import annotations

__all__ = ["DEFAULT_LIMIT", "clean"]

DEFAULT_LIMIT = 200
ELLIPSIS = "…"


def clean(text: str | bytes, limit: int = DEFAULT_LIMIT) -> str:
    """One printable line of at most ``limit`` characters.

    Whitespace runs (newlines included) become one space; other control and
    format characters (ESC, NUL, bidi overrides) are shown escaped (``\\x1b``);
    a longer text is cut and ends with an ellipsis.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    out: list[str] = []
    size = 0
    space = False
    for ch in text:
        if ch.isspace():
            space = bool(out)
            continue
        piece = ch if ch.isprintable() else _escape(ch)
        if space:
            piece = " " + piece
            space = False
        if size + len(piece) > limit:
            return _cut(out, size, limit)
        out.append(piece)
        size += len(piece)
    return "".join(out)


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _cut(pieces: list[str], size: int, limit: int) -> str:
    while pieces and size + len(ELLIPSIS) > limit:
        size -= len(pieces.pop())
    return "".join(pieces).rstrip() + ELLIPSIS
