"""Tests of edge/."""
