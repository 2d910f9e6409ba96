"""One router per module: ``probes`` (/healthz, /readyz, /metrics), ``docs`` (/docs, /openapi.json) and the
application routes (``classify``: /v1/classify, /v1/model). An application adds its own APIRouter(s)
to ``create_app(settings, routers=[...])``."""
