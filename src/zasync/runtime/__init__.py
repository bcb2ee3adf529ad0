"""The runtime: what a worker process adds to the model (the dispatcher, its pools, settings)."""
