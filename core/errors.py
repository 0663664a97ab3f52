"""User-facing errors.

Every error a user can cause (bad input, missing weights, ...) is a :class:`CoresetError`
whose message says what was wrong and what to do. The CLI prints the message without a
traceback and exits with status 2; the app shows it with ``st.error``.
"""


class CoresetError(Exception):
    """An error caused by the user's input or environment, with an actionable message."""


class DatasetError(CoresetError):
    """The dataset could not be loaded at all (nothing usable was found)."""


class WeightsUnavailableError(CoresetError):
    """A model's weights are neither cached nor reachable (offline) nor given as a file."""


class OutputError(CoresetError, OSError):
    """A file or folder could not be written (permissions, a full disk, a file in the way).

    Also an :class:`OSError` (``errno`` is the system's), so code that tolerates failed
    writes (``except OSError``) keeps doing so.
    """


class SelectionInputError(CoresetError, ValueError):
    """Invalid input to a selector (fraction, features, labels, parameters)."""
