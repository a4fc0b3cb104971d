"""PostgreSQL storage: schema and migrations, named queries, the batch writer, devices, the dead letter."""
