"""Payments and their allocations to invoices (built by the payments issue)."""
