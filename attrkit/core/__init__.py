"""Shared plumbing for both engines: targets, layers, references, validation, memory budget."""
