"""From a filesystem event to a settled candidate: observers, scans, the naming rules,
the quiet-time gate."""
