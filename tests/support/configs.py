"""Config files made to attack the loader."""

from __future__ import annotations


def alias_bomb(levels: int) -> str:
    """A "billion laughs": each level is nine aliases of the one before (9**levels values)."""
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for n in range(1, levels + 1):
        lines.append(f"l{n}: &l{n} [" + ",".join([f"*l{n - 1}"] * 9) + "]")
    return "\n".join([*lines, "cameras: [{name: a, source: {kind: synthetic}}]", ""])
