"""Tests of the cache actor."""
