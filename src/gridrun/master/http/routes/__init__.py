"""The HTTP API's routes, one FastAPI router per resource: tasks, jobs, schedules, workers, and
what observes the grid (stats, events, metrics, health, the dashboard). `common` holds what
they share: who the caller is, the objects a route uses, reading bodies, audit.

`gridrun.master.http.api.create_api` assembles them with the middleware and the error
handlers; the article's `POST /tasks` is `legacy`.
"""
