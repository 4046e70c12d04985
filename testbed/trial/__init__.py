"""The field trial: profiles and criteria, the case runner, metrics, verdicts and the run report."""
