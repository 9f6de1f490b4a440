"""Connecting a Google account and keeping its channels: OAuth, identity checks, channels, enable/disable/status and
the renewal run."""
