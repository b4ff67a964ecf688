"""DL/T 645-2007 meters behind a transparent serial-to-TCP gateway: frame codec and
the per-link collector."""
