"""Ops: deliverability, error tracking and logs (issue 15)."""
