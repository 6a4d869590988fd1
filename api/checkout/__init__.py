"""Checkout over HTTP: sessions for merchants' servers, their view, stream and QR for the SDK."""
