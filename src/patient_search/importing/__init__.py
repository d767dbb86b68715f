"""Bulk import of patients from CSV or JSONL through COPY."""
