"""The terminal consoles of the command line (rich), as wide as their tables when redirected.

Rich wraps output at the terminal's width, and at 80 columns when there is no terminal, so a
leaderboard redirected to a file or piped to ``less`` came out cut into pieces. Redirected (the
console's stream is not a terminal) and with no ``COLUMNS`` set, these consoles are
:data:`REDIRECTED_WIDTH` wide: tables keep their natural width and every row stays on its lines.
"""

from __future__ import annotations

from rich.console import Console as _RichConsole
from rich.console import ConsoleDimensions

REDIRECTED_WIDTH = 1000


class Console(_RichConsole):
    """A rich console that is :data:`REDIRECTED_WIDTH` wide when its output is not a terminal."""

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        if self._width is None and not self.is_terminal and not self._environ.get("COLUMNS"):
            return ConsoleDimensions(REDIRECTED_WIDTH, size.height)
        return size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        _RichConsole.size.fset(self, new_size)  # type: ignore[attr-defined]

