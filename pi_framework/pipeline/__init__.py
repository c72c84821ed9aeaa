"""The indexing pipeline: documents → normalised text → chunks → hashes → embeddings → sinks → ledger."""
