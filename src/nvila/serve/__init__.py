"""`nvila serve`: an OpenAI-compatible HTTP server for one machine, with a web demo.

Modules: `app` (routes, checks, errors), `engine` (chat jobs onto `nvila.engine`), `schema` (wire format),
`limits` (settings, admission), `media` (image URLs), `metrics` (Prometheus text), `cli` (the command).
Importing this package does not import FastAPI; use `nvila.serve.app.create_app`.
"""
