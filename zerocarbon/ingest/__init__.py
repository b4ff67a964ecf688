"""Async collectors -> reading batches; the admission step and the pipeline."""
