"""The customer's mobile web app: sign-in, the payment page, confirm and cancel, history."""
