"""Recording and replaying parity goldens of the reference repositories (see README.md here)."""
