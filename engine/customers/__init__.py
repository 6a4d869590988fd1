"""Customers of the pay-with-the-phone app: accounts, sign-in sessions, registered cards."""
