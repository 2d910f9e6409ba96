"""Exported model directories: `export_model` (ONNX fp32/int8 or TensorRT), checked for parity before anything is written.

Modules: ``exporter`` (the directory, start to finish), ``onnx`` (the graph), ``parity`` (the check)."""

from acceltune.export.exporter import ExportResult, export_model

__all__ = ["ExportResult", "export_model"]
