"""Evidence that holds: run groups over seeds and paired statistics between runs on the same eval examples."""
