"""Human-readable reports rendered from a run's ``summary.json`` alone (issue 7)."""
