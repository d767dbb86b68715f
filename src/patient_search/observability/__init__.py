"""Metrics, structured logs and slow-query detection — none of which ever carries PHI."""
