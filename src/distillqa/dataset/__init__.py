"""Grounding, filters, split and SQuAD export: generated pairs -> a span-grounded dataset."""
