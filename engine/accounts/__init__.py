"""The back office's people: merchant users and operators, their passwords and sessions."""
