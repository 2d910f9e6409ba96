"""The assistant's app: the shared server (create_app) with the /v1/reply router, plus the chat page."""

from __future__ import annotations

from typing import Callable

from acceltune.assistant.page import page_router
from acceltune.assistant.replies import Replies
from acceltune.assistant.routes import AssistantRoutes
from acceltune.assistant.store import ConversationStore
from acceltune.serve import ServeSettings, create_app

DESCRIPTION = ("A customer-service assistant over an intent model: POST /v1/reply answers a message with its intent, "
               "a reply and whether to hand the conversation to a person. The chat page is at /. See docs/assistant.md.")


def create_assistant_app(settings: ServeSettings, replies: Replies, store: ConversationStore, *,
                         on_load_error: Callable[[BaseException], None] | None = None, **routes_options):
    """``routes_options``: AssistantRoutes' (predictor_factory, purge_every_s)."""
    routes = AssistantRoutes(settings.model_dir, replies, store, **routes_options)
    # The page holds no data: served without the API key (its API calls send one), like the probes.
    return create_app(settings, routers=[routes.router], pages=[page_router()], on_load_error=on_load_error,
                      title="acceltune assistant", description=DESCRIPTION)
