"""Readers, writers and split builders for labeled text (see README, "Data")."""
