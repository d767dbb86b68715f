"""Caching of profiles, summaries and search pages: Redis when configured, else in-process.

The cache is an accelerator, never a source of truth: every failure is a miss.
"""
