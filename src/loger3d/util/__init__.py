"""Small helpers every stage uses: atomic file writes and background workers."""
