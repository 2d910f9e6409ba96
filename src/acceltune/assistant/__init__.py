"""The customer-service assistant: an intent model answers each message from a replies file, hands the
conversation to a person when the message is out of scope, the intent says so, or the model stays unsure,
stores conversations with a bounded retention, and exports what it could not answer for labelling.

Built on the core's public API only: the shared server (create_app, start_batcher), acceltune.storage
and the Predictor. See docs/assistant.md.
"""
