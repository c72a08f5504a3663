"""Model adapters behind small protocols, one module per backend, heavy imports lazy."""
