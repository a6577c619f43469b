"""Errors a user can act on. The CLI prints `str(err)` as one line and exits with `err.exit_code`."""


class SafeAlignError(Exception):
    """Base class: a one-line message and a process exit code."""

    exit_code = 1


class ConfigError(SafeAlignError):
    """Unknown key, wrong type or impossible value in a config (names the key)."""

    exit_code = 2


class DataError(SafeAlignError):
    """Malformed input data: the message reads `FILE:ROW: field: what is wrong`."""

    exit_code = 2

    def __init__(self, file: str, row: int | None, field: str | None, problem: str):
        self.file, self.row, self.field, self.problem = file, row, field, problem
        where = f"{file}:{row}" if row is not None else str(file)
        super().__init__(f"{where}: {field}: {problem}" if field else f"{where}: {problem}")

