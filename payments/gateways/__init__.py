"""Outside services used by payments; only `stripe.py` here imports the Stripe SDK."""
