"""Sentiment: expression sampling on tracked people and the int8 sentiment vector."""
