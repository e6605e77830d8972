"""The local runtime of ``letsgo-worker serve``: HTTP intake, the SQLite queue, delivery, the timer."""
