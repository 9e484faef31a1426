class CostInputError(ValueError):
    """A user-supplied price, power, rate or file that cannot be used; the CLI prints it as one line."""
