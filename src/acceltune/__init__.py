"""acceltune: fine-tune, evaluate, optimise and serve BERT-family text classifiers."""

__version__ = "0.1.0"
