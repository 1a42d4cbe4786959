"""One exception type for mistakes a user can fix (bad params, bad files, missing data).

The CLI turns it into one line on stderr and exit code 2, never a traceback.
"""


class SynthaugError(Exception):
    """A user-facing error: the message names the file or parameter and what is allowed."""
