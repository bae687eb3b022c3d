"""The one error type users see: what went wrong, where, why, and what to do about it."""

from __future__ import annotations


class AnecError(Exception):
    """A problem the user can act on. The CLI prints it as one line and exits with `exit_code`."""

    exit_code = 2

    def __init__(self, what: str, *, where: str = "", why: str = "", hint: str = ""):
        self.what = what
        self.where = where
        self.why = why
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        parts = [self.what]
        if self.where:
            parts[0] = f"{self.where}: {self.what}"
        if self.why:
            parts.append(self.why)
        text = ": ".join(parts)
        if self.hint:
            text += f" (hint: {self.hint})"
        return text.replace("\n", " ")
