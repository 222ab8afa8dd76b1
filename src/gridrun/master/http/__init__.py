"""The master's HTTP edge: the FastAPI app (`api`), its routes, the bodies it takes
(`requests`) and the answers it gives (`schemas`), the browser boundary (`guard`), error bodies
(`problems`), log following (`follow`) and the dashboard with its assets (`web/`)."""
