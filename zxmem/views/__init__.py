"""Views: pure functions from a Snapshot (and options) to text or JSON."""
