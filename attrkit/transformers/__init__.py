"""Transformers: attention weights read on any common implementation (``capture``), attention rollout, gradient-
weighted attention relevance and attention probes (``methods``), AttnLRP (``attnlrp``)."""
from .capture import Capture, attention_sites

__all__ = ["Capture", "attention_sites"]
