"""The one exception kvcalc raises for bad input; the CLI turns it into a one-line message and exit 2."""


class KvcalcError(ValueError):
    """Bad input from the user: a spec file, a flag or a name. The message is one line and names the culprit."""


class AssumptionWarning(UserWarning):
    """A config.json left a field out and kvcalc assumed a value (the CLI prints these on stderr)."""


class CapacityWarning(UserWarning):
    """A reported figure was capped or assumed (the CLI prints these on stderr; capacity's JSON lists them)."""


class ArgumentError(KvcalcError, TypeError):
    """A public function called with arguments it does not take (a keyword misspelt, one missing, too many given): a
    KvcalcError naming the argument, and a TypeError as Python's own binding error is. Raised below the API as well
    (plan's lengths and load, serve's load, which have no default), its message in the CLI's flags; `api`, where
    given, is the message in the Python API's keywords, which kvcalc's public functions raise in its place."""

    def __init__(self, message: str, api: str | None = None):
        super().__init__(message)
        self.api = api
