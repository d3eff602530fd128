"""Tests of retention/."""
