"""Synthetic patient data for seeding databases, demos and load tests."""
