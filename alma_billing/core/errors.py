"""Errors shared across apps: a service refusing a change, and an outside service failing."""


class ServiceError(Exception):
    """A state change was refused; `message` is a plain sentence safe to show to the person who asked."""

    def __init__(self, message: str, *, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class TransportError(Exception):
    """An outside service (Stripe, Twilio, email) failed; `permanent` says whether retrying can help."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
