"""Tests of the socket hub."""
