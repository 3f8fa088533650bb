"""Server-held sessions: stores (memory, Redis) and the compare-and-set runner."""
