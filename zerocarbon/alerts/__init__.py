"""Alert rules: the math behind each rule kind, as pure functions (no I/O)."""
