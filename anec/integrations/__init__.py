"""Bridges from other frameworks' compile and test APIs into anec."""
