"""Growth: the account lifecycle, entity resolution, MRR movements and retention, one month or day built
in one call (``month``), the Growth checks and the Growth runbooks' logic."""
