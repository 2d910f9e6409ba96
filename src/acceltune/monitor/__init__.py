"""The financial-news sentiment monitor (`acceltune monitor`): a stream of items in, scored and stored items,
a sentiment index per entity and window, alerts and a live dashboard out. See docs/monitor.md.

Built on the core's public API only (Predictor, create_app, start_batcher, acceltune.storage); the core never
imports it. Modules: items (parsing), reader (byte-positioned input), entities (tagging), sentiment (labels ->
index score), store (tables and transactions), index (windows and buckets), alerts (rules), webhook (delivery),
ingest (the pipeline), api and schemas (HTTP), command (the CLI).
"""
