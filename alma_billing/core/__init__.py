"""Shared core: money formatting, audit events, errors, the dev mail outbox and health checks."""
