"""Growth: the account lifecycle, entity resolution, MRR movements and retention, the Growth checks and
the Growth runbooks' logic."""
