"""PostgreSQL schema, embedded server, binary-COPY writer and queries."""
