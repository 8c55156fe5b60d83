"""Faces: BlazeFace detection, the quality gate, facial-expression inference."""
