"""The master's core: the use cases (`service`), placement (`scheduler`, `fairness`, pure),
dispatch, liveness, retention, trust, schedules, the live worker sessions and what the edges
share about callers (`access`, `audit`). It imports neither edge (`http`, `wire`)."""
