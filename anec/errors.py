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


def first_line(error: BaseException, typed: bool = True) -> str:
    """`error` as one line: its type and the first line of its message (torch's are often many lines,
    or none; xDSL's go on to print the op). Untyped, the message line alone, or the type if it has none."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    return f"{type(error).__name__}: {lines[0]}" if typed else lines[0]


class ImportFailure(AnecError):
    """anec's own failure while importing a node (a bug, not the user's mistake): still one line that
    names the node, so `anec.compile` raises nothing but `AnecError`s; the CLI exits with 1."""

    exit_code = 1
    HINT = "this is a bug in anec: please report it with the model; --debug shows the traceback"

    @classmethod
    def of(cls, what: str, where: str, error: BaseException) -> ImportFailure:
        """`error` (any exception, xDSL's multi-line VerifyException included) as one line: its type and first line."""
        return cls(what, where=where, why=first_line(error), hint=cls.HINT)


class AnecFallbackWarning(UserWarning):
    """Work that could have run through anec runs eagerly in torch instead: says why, and the fix."""
