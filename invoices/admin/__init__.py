"""The admin providers and ops staff live in. Providers see only their own patients, sessions and invoices; ops see
everything. Money is read-only once issued; every action goes through a service that writes an audit event.

One module per model family; importing them registers their admins:
`scoping` (who sees what), `practices`, `patients`, `sessions`, `invoices`, `reminders`.
"""

from invoices.admin import invoices, patients, practices, reminders, sessions  # noqa: F401  (registers the admins)
