"""Staff views above the apps: they read invoices, payments and claims together (docs/architecture.md)."""
