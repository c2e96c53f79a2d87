"""Helpers shared by the chapters (imported after adding book/ to sys.path)."""
