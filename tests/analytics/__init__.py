"""Tests of analytics/."""
