"""Sequential recommendation on the core: `acceltune recommend train | add-items | export | serve` (docs/recommend.md).

data (read, validate, leave-one-out) → task (the training loop's Task) → model (SASRec/BERT4Rec with item text)
→ artifacts (the model directory) → recommender (top-k) → routes + store (the server, events in a database);
metrics and baselines score every run on the field's full-ranking protocol. The core never imports this package.
"""
