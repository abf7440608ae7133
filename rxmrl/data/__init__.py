"""Curriculum data: schema, sources, and the offline TinyStories-MRL generator."""
