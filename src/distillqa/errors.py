"""The one exception type the CLI turns into a one-line error and a non-zero exit."""


class DistillqaError(Exception):
    """A user-facing problem: bad input, missing model, unreachable server. Message is one line."""
