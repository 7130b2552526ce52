"""Leaderboards, HTML reports and run comparisons."""
