"""The pipeline itself: upload workers, the backoff gate, pauses, adoption and dedupe,
polling, finalizing, moving."""
