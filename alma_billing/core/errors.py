"""Errors shared across apps: a service refusing a change, and an outside service failing."""

from django.utils.functional import Promise


class ServiceError(Exception):
    """A state change was refused; `message` is a plain sentence safe to show to the person who asked."""

    def __init__(self, message: str | Promise, *, code: str = "invalid") -> None:
        # A lazy (translatable) message is rendered here, in the language of whoever hit the refusal.
        super().__init__(str(message))
        self.message = str(message)
        self.code = code


class TransportError(Exception):
    """An outside service (Stripe, Twilio, email) failed; `permanent` says whether retrying can help."""

    def __init__(self, message: str | Promise, *, permanent: bool) -> None:
        super().__init__(str(message))
        self.message = str(message)
        self.permanent = permanent
