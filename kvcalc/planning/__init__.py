"""What to deploy: compare attention variants and size deployments (capacity.py)."""
