"""API keys: who may read and who may write."""
