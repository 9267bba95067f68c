"""Labeled text in memory: the example record, readers of every supported format, data specs,
the original LEOPARD tf_records, and k-shot splits."""
