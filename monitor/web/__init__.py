"""The web face of the service (SPEC §8): ``app`` (Starlette routes, auth, security
headers), ``queries`` (validated query parameters), ``views`` (the JSON shapes,
shared with the CLI), ``page`` (the HTML status page) and ``reads`` (the store
reads behind the history and events views).

Nothing is imported here, so ``regmon status`` reads ``views`` without Starlette.
"""

__all__: list[str] = []
