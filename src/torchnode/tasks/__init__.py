"""Datasets and synthetic tasks for examples, tests and the command line."""
