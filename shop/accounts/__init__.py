"""Accounts: registration, sign-in, sessions, roles, two-factor sign-in and the patient profile."""
