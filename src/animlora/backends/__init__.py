"""Model adapters behind small protocols, one file per backend, heavy imports lazy."""
