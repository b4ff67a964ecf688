"""Period accounts, product footprints, scorecard, ledger, cost, reports."""
