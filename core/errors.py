"""The one base class for problems a person can fix (bad input, a missing file, a wrong spec).

The CLI prints such an error as one line on stderr and exits 2; the GUI shows it in a dialog.
Anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input stated for a person: what, where (file/line/field) and what to do."""


class ModelLoadError(UserError):
    """A model spec or checkpoint could not be loaded; the message names it and what was expected."""


USER_ERRORS: tuple[type[BaseException], ...] = (UserError,)
