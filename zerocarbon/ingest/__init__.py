"""Async collectors that turn device traffic into Reading batches, and the pipeline."""
