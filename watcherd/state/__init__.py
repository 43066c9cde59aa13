"""The state database: schema, records, the file state machine, queries and the instance
lock. The only SQL."""
