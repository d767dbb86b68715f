"""Connection pool, tenant-scoped transactions and the service's database role."""
