"""``zerocarbon report``: a period's account, energy cost, instruments and ESG mapping as
one report (:mod:`.model`), rendered as PDF (:mod:`.pdf`), Excel (:mod:`.xlsx`) or JSON."""
