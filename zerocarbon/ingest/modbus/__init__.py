"""Modbus TCP: read planner, decoder and the per-link collector."""
