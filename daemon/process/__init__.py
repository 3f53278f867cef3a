"""The daemon as a process: serve in the foreground, start detached, stop, report status; its state file."""
