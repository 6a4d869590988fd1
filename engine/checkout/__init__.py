"""Checkout sessions (pay with the phone): create, transitions, confirm, expiry."""
