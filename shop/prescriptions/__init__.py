"""Prescriptions: secure upload, encrypted storage, the pharmacist review queue."""
