"""Reporting: plots (and, later, the HTML report). Reads results; never fits."""
