class UserError(Exception):
    """A mistake in what the user asked for (unknown model, bad size, unreadable file).

    The CLI prints the message as one line and exits with code 2; no traceback.
    """
